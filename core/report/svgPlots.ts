/**
 * Hand-written SVG plots of a sweep report (no dependencies):
 *  - asrVsAccSvg: one scatter panel per attack, ACC (x) against ASR (y), one marker per defense
 *    with ±std error bars, and the undefended model as a black diamond; bottom right is ideal.
 *  - derByDefenseSvg: mean DER per defense as grouped bars (one group per attack) with ±std
 *    whiskers and the 50 (= no effect) reference line.
 * When the sweep varies the clean budget or the model, panels/groups are per
 * (attack, budget, model) so that every panel still has one marker per defense.
 * renderSweepReport writes the whole report (Markdown, CSV, JSON and both plots).
 */
import type { SweepCellRecord } from './records';
import type { SeedRole } from '../../schemas/seedRoles';
import { buildSweepReport, naturalCompare, SWEEP_REPORT_FILES, type Stat, type SweepReport, type SweepRow } from './sweepReport';

/** Okabe-Ito (colour-blind safe) first, then Tol's muted; black is reserved for the undefended model. */
export const DEFENSE_COLORS = [
  '#0072B2',
  '#D55E00',
  '#009E73',
  '#CC79A7',
  '#E69F00',
  '#56B4E9',
  '#882255',
  '#44AA99',
  '#999933',
  '#AA4499',
  '#332288',
  '#117733',
];
const UNDEFENDED_COLOR = '#111111';
const FONT = 'Helvetica, Arial, sans-serif';
const GRID = '#e3e3e3';
const AXIS = '#444444';
const MUTED = '#666666';

export interface PlotOptions {
  /** chart title (default: a generic one) */
  title?: string;
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&#39;');
/** Coordinates with at most 2 decimals, no trailing zeros. */
const n = (v: number) => String(Math.round(v * 100) / 100);
const clamp = (v: number, lo = 0, hi = 100) => Math.min(hi, Math.max(lo, v));
const statText = (s: Stat | null) => (s ? `${s.mean.toFixed(1)} ± ${s.std === null ? '–' : s.std.toFixed(1)}` : '–');
/** Rough text width for layout (Helvetica averages ~0.58 em per character). */
const textWidth = (s: string, size: number) => Math.ceil(s.length * size * 0.58);

function text(x: number, y: number, s: string, attrs: Record<string, string | number> = {}): string {
  const a = Object.entries({ 'font-size': 12, fill: AXIS, ...attrs })
    .map(([k, v]) => ` ${k}="${typeof v === 'number' ? n(v) : esc(v)}"`)
    .join('');
  return `<text x="${n(x)}" y="${n(y)}"${a}>${esc(s)}</text>`;
}

function line(x1: number, y1: number, x2: number, y2: number, stroke: string, extra = ''): string {
  return `<line x1="${n(x1)}" y1="${n(y1)}" x2="${n(x2)}" y2="${n(y2)}" stroke="${stroke}"${extra ? ` ${extra}` : ''}/>`;
}

function svgDocument(width: number, height: number, title: string, body: string[]): string {
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<svg xmlns="http://www.w3.org/2000/svg" width="${n(width)}" height="${n(height)}" viewBox="0 0 ${n(width)} ${n(height)}" font-family="${FONT}">`,
    `<title>${esc(title)}</title>`,
    `<rect class="background" x="0" y="0" width="${n(width)}" height="${n(height)}" fill="#ffffff"/>`,
    text(16, 28, title, { 'font-size': 17, 'font-weight': 'bold', fill: '#222222' }),
    ...body,
    '</svg>',
    '',
  ].join('\n');
}

/** Distinct defenses in a fixed order, each with its colour (shared by both plots). */
export function defenseColors(rows: SweepRow[]): Map<string, string> {
  const names = [...new Set(rows.map((r) => r.defense))].sort(naturalCompare);
  return new Map(names.map((d, i) => [d, DEFENSE_COLORS[i % DEFENSE_COLORS.length]]));
}

export interface Panel {
  /** attack, plus clean budget and model when the sweep varies them */
  label: string;
  attack: string;
  cleanBudget: string;
  model: string;
  rows: SweepRow[];
}

/** One panel per attack (per attack, budget, model when those vary), in the rows' order. */
export function panelsOf(rows: SweepRow[]): Panel[] {
  const budgets = new Set(rows.map((r) => r.cleanBudget));
  const models = new Set(rows.map((r) => r.model));
  const panels = new Map<string, Panel>();
  const sorted = [...rows].sort(
    (a, b) => naturalCompare(a.attack, b.attack) || naturalCompare(a.cleanBudget, b.cleanBudget) || naturalCompare(a.model, b.model) || naturalCompare(a.defense, b.defense),
  );
  for (const r of sorted) {
    const key = JSON.stringify([r.attack, r.cleanBudget, r.model]);
    let p = panels.get(key);
    if (!p) {
      const parts = [r.attack];
      if (budgets.size > 1) parts.push(`budget ${r.cleanBudget}`);
      if (models.size > 1) parts.push(r.model);
      panels.set(key, (p = { label: parts.join(' · '), attack: r.attack, cleanBudget: r.cleanBudget, model: r.model, rows: [] }));
    }
    p.rows.push(r);
  }
  return [...panels.values()];
}

/** Mean ± std over seeds of the undefended model in a panel (per-seed values averaged across defenses first). */
function undefended(rows: SweepRow[]): { acc: Stat | null; asr: Stat | null } {
  const perSeed = new Map<number, { acc: number[]; asr: number[] }>();
  for (const r of rows)
    for (const c of r.cells) {
      let s = perSeed.get(c.seed);
      if (!s) perSeed.set(c.seed, (s = { acc: [], asr: [] }));
      if (c.standardAcc !== undefined) s.acc.push(c.standardAcc);
      if (c.standardAsr !== undefined) s.asr.push(c.standardAsr);
    }
  const avg = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : undefined);
  const stat = (xs: Array<number | undefined>): Stat | null => {
    const v = xs.filter((x): x is number => x !== undefined);
    if (!v.length) return null;
    const mean = v.reduce((a, b) => a + b, 0) / v.length;
    if (v.length === 1) return { mean, std: null, n: 1 };
    return { mean, std: Math.sqrt(v.reduce((a, b) => a + (b - mean) ** 2, 0) / (v.length - 1)), n: v.length };
  };
  const seeds = [...perSeed.values()];
  return { acc: stat(seeds.map((s) => avg(s.acc))), asr: stat(seeds.map((s) => avg(s.asr))) };
}

interface LegendEntry {
  label: string;
  color: string;
  shape: 'circle' | 'diamond' | 'square';
}

function legend(x: number, y: number, entries: LegendEntry[], heading: string): string[] {
  const out = [`<g class="legend" transform="translate(${n(x)},${n(y)})">`, text(0, 0, heading, { 'font-size': 12, 'font-weight': 'bold' })];
  entries.forEach((e, i) => {
    const cy = 20 + i * 20;
    if (e.shape === 'circle') out.push(`<circle class="legend-swatch" cx="7" cy="${cy - 4}" r="5.5" fill="${e.color}"/>`);
    else if (e.shape === 'square') out.push(`<rect class="legend-swatch" x="1" y="${cy - 10}" width="12" height="12" fill="${e.color}"/>`);
    else out.push(`<path class="legend-swatch" d="${diamond(7, cy - 4, 6.5)}" fill="${e.color}"/>`);
    out.push(text(20, cy, e.label, { 'font-size': 12 }));
  });
  out.push('</g>');
  return out;
}

const legendWidth = (labels: string[], heading: string) => Math.max(textWidth(heading, 12), ...labels.map((l) => 22 + textWidth(l, 12))) + 16;

function diamond(cx: number, cy: number, r: number): string {
  return `M${n(cx)} ${n(cy - r)}L${n(cx + r)} ${n(cy)}L${n(cx)} ${n(cy + r)}L${n(cx - r)} ${n(cy)}Z`;
}

/** Horizontal and vertical ±std bars with caps, in plot coordinates. */
function errorBars(px: (v: number) => number, py: (v: number) => number, x: Stat, y: Stat, color: string): string[] {
  const out: string[] = [];
  const cap = 3;
  const w = `stroke-width="1.3"`;
  if (x.std !== null && x.std > 0) {
    const x0 = px(clamp(x.mean - x.std));
    const x1 = px(clamp(x.mean + x.std));
    const yy = py(y.mean);
    out.push(line(x0, yy, x1, yy, color, w), line(x0, yy - cap, x0, yy + cap, color, w), line(x1, yy - cap, x1, yy + cap, color, w));
  }
  if (y.std !== null && y.std > 0) {
    const y0 = py(clamp(y.mean - y.std));
    const y1 = py(clamp(y.mean + y.std));
    const xx = px(x.mean);
    out.push(line(xx, y0, xx, y1, color, w), line(xx - cap, y0, xx + cap, y0, color, w), line(xx - cap, y1, xx + cap, y1, color, w));
  }
  return out;
}

/**
 * ASR (y) against ACC (x) of the purified models, one panel per attack, one marker per defense
 * (±std bars both ways) plus the undefended model (black diamond). Both axes 0-100 %.
 */
export function asrVsAccSvg(rows: SweepRow[], opts: PlotOptions = {}): string {
  const title = opts.title ?? 'Attack success rate vs clean accuracy';
  const colors = defenseColors(rows);
  const panels = panelsOf(rows);
  const P = 260; // plot area side
  const M = { left: 58, right: 18, top: 36, bottom: 48 };
  const panelW = M.left + P + M.right;
  const panelH = M.top + P + M.bottom;
  const cols = Math.max(1, Math.min(3, panels.length));
  const gridRows = Math.max(1, Math.ceil(panels.length / cols));
  const entries: LegendEntry[] = [
    ...[...colors].map(([label, color]) => ({ label, color, shape: 'circle' as const })),
    { label: 'undefended (before purification)', color: UNDEFENDED_COLOR, shape: 'diamond' },
  ];
  const legendW = legendWidth(
    entries.map((e) => e.label),
    'Defense',
  );
  const top = 44;
  const footer = 'Markers: mean over seeds; bars: ±1 sample std. Better = bottom right (high ACC, low ASR).';
  const width = Math.max(16 + cols * panelW + 12 + legendW, textWidth(title, 17) + 32, textWidth(footer, 11) + 32);
  const height = Math.max(top + gridRows * panelH + 26, top + 40 + entries.length * 20 + 20);
  const body: string[] = [];
  if (panels.length === 0) body.push(text(16, top + 40, 'No completed cells to plot.', { 'font-size': 14, fill: MUTED }));

  panels.forEach((panel, i) => {
    const ox = 16 + (i % cols) * panelW;
    const oy = top + Math.floor(i / cols) * panelH;
    const px = (v: number) => M.left + (clamp(v) / 100) * P;
    const py = (v: number) => M.top + P - (clamp(v) / 100) * P;
    body.push(`<g class="panel" data-attack="${esc(panel.attack)}" transform="translate(${n(ox)},${n(oy)})">`);
    body.push(text(M.left + P / 2, 22, panel.label, { 'font-size': 14, 'font-weight': 'bold', 'text-anchor': 'middle', fill: '#222222' }));
    body.push(`<rect class="plot-area" x="${M.left}" y="${M.top}" width="${P}" height="${P}" fill="#fbfbfb" stroke="#bbbbbb"/>`);
    for (let t = 0; t <= 100; t += 20) {
      if (t > 0 && t < 100) body.push(line(px(t), M.top, px(t), M.top + P, GRID), line(M.left, py(t), M.left + P, py(t), GRID));
      body.push(line(px(t), M.top + P, px(t), M.top + P + 5, AXIS), line(M.left - 5, py(t), M.left, py(t), AXIS));
      body.push(text(px(t), M.top + P + 18, String(t), { 'font-size': 11, 'text-anchor': 'middle', class: 'tick-label' }));
      body.push(text(M.left - 8, py(t) + 4, String(t), { 'font-size': 11, 'text-anchor': 'end', class: 'tick-label' }));
    }
    body.push(text(M.left + P / 2, M.top + P + 38, 'ACC (%) — clean accuracy', { 'font-size': 12, 'text-anchor': 'middle', class: 'axis-label' }));
    const yMid = M.top + P / 2;
    body.push(
      text(16, yMid, 'ASR (%) — attack success', { 'font-size': 12, 'text-anchor': 'middle', class: 'axis-label', transform: `rotate(-90 16 ${n(yMid)})` }),
    );

    let drawn = 0;
    const u = undefended(panel.rows);
    if (u.acc && u.asr) {
      body.push(...errorBars(px, py, u.acc, u.asr, UNDEFENDED_COLOR));
      body.push(
        `<path class="undefended" d="${diamond(px(u.acc.mean), py(u.asr.mean), 7)}" fill="${UNDEFENDED_COLOR}" stroke="#ffffff" stroke-width="1">` +
          `<title>${esc(`undefended: ACC ${statText(u.acc)}, ASR ${statText(u.asr)} (n=${Math.min(u.acc.n, u.asr.n)})`)}</title></path>`,
      );
      drawn++;
    }
    for (const r of panel.rows) {
      if (!r.acc || !r.asr) continue;
      const color = colors.get(r.defense) ?? DEFENSE_COLORS[0];
      body.push(...errorBars(px, py, r.acc, r.asr, color));
      body.push(
        `<circle class="marker" data-defense="${esc(r.defense)}" cx="${n(px(r.acc.mean))}" cy="${n(py(r.asr.mean))}" r="5.5" fill="${color}" stroke="#ffffff" stroke-width="1">` +
          `<title>${esc(`${r.defense}: ACC ${statText(r.acc)}, ASR ${statText(r.asr)}, RA ${statText(r.ra)} (n=${r.n})`)}</title></circle>`,
      );
      drawn++;
    }
    if (drawn === 0) body.push(text(M.left + P / 2, M.top + P / 2, 'no ACC/ASR values', { 'font-size': 12, 'text-anchor': 'middle', fill: MUTED }));
    body.push('</g>');
  });
  body.push(...legend(16 + cols * panelW + 12, top + 22, entries, 'Defense'));
  body.push(
    text(16, height - 8, footer, { 'font-size': 11, fill: MUTED }),
  );
  return svgDocument(width, height, title, body);
}

/**
 * Mean DER per defense as bars grouped by attack, ±std whiskers, the value above each bar,
 * and a dashed reference line at 50 (= no effect). Y axis 0-100.
 */
export function derByDefenseSvg(rows: SweepRow[], opts: PlotOptions = {}): string {
  const title = opts.title ?? 'Defense effectiveness rating (DER) by defense';
  const colors = defenseColors(rows);
  const panels = panelsOf(rows).map((p) => ({ ...p, rows: p.rows.filter((r) => r.der !== null) })).filter((p) => p.rows.length > 0);
  const H = 280;
  const M = { left: 64, right: 100, top: 64, bottom: 64 }; // right: room for the reference line's label
  const barW = 30;
  const barGap = 4;
  const groupGap = 34;
  const groups = panels.map((p) => {
    const barsW = p.rows.length * barW + (p.rows.length - 1) * barGap;
    return { ...p, barsW, w: Math.max(barsW, textWidth(p.label, 12) + 4) };
  });
  const contentW = groups.reduce((s, g) => s + g.w, 0) + groupGap * (groups.length + 1);
  const plotW = Math.max(260, contentW);
  const entries: LegendEntry[] = [...colors].map(([label, color]) => ({ label, color, shape: 'square' as const }));
  const legendW = legendWidth(
    entries.map((e) => e.label),
    'Defense',
  );
  const formula = 'DER = [max(0, ΔASR) − max(0, ΔACC) + 1] / 2 × 100: 50 = no effect, 100 = ASR removed at no ACC cost';
  const width = Math.max(M.left + plotW + M.right + legendW, M.left + textWidth(formula, 11) + 16, textWidth(title, 17) + 32);
  const height = Math.max(M.top + H + M.bottom + 10, M.top + 40 + entries.length * 20);
  const py = (v: number) => M.top + H - (clamp(v) / 100) * H;
  const body: string[] = [];
  body.push(`<rect class="plot-area" x="${M.left}" y="${M.top}" width="${n(plotW)}" height="${H}" fill="#fbfbfb" stroke="#bbbbbb"/>`);
  for (let t = 0; t <= 100; t += 10) {
    if (t > 0 && t < 100) body.push(line(M.left, py(t), M.left + plotW, py(t), GRID));
    body.push(line(M.left - 5, py(t), M.left, py(t), AXIS));
    body.push(text(M.left - 8, py(t) + 4, String(t), { 'font-size': 11, 'text-anchor': 'end', class: 'tick-label' }));
  }
  const yMid = M.top + H / 2;
  body.push(text(18, yMid, 'DER (mean over seeds)', { 'font-size': 12, 'text-anchor': 'middle', class: 'axis-label', transform: `rotate(-90 18 ${n(yMid)})` }));
  body.push(
    text(M.left, M.top - 18, formula, { 'font-size': 11, fill: MUTED }),
  );
  if (groups.length === 0) body.push(text(M.left + plotW / 2, yMid, 'No DER values to plot.', { 'font-size': 14, 'text-anchor': 'middle', fill: MUTED }));

  let x = M.left + groupGap + (plotW - contentW) / 2; // centred when the plot is wider than its bars
  for (const g of groups) {
    const start = x + (g.w - g.barsW) / 2;
    body.push(`<g class="group" data-attack="${esc(g.attack)}">`);
    g.rows.forEach((r, i) => {
      const der = r.der!;
      const color = colors.get(r.defense) ?? DEFENSE_COLORS[0];
      const bx = start + i * (barW + barGap);
      const top = py(der.mean);
      const h = Math.max(0, M.top + H - top);
      body.push(
        `<rect class="bar" data-defense="${esc(r.defense)}" x="${n(bx)}" y="${n(top)}" width="${barW}" height="${n(h)}" fill="${color}">` +
          `<title>${esc(`${g.label} / ${r.defense}: DER ${statText(der)} (n=${der.n})`)}</title></rect>`,
      );
      let labelY = top - 5;
      if (der.std !== null && der.std > 0) {
        const cx = bx + barW / 2;
        const y0 = py(der.mean - der.std);
        const y1 = py(der.mean + der.std);
        body.push(
          `<g class="whisker">${line(cx, y0, cx, y1, '#222222', 'stroke-width="1.3"')}${line(cx - 5, y0, cx + 5, y0, '#222222', 'stroke-width="1.3"')}${line(cx - 5, y1, cx + 5, y1, '#222222', 'stroke-width="1.3"')}</g>`,
        );
        labelY = Math.min(labelY, y1 - 5);
      }
      body.push(text(bx + barW / 2, Math.max(M.top - 5, labelY), der.mean.toFixed(1), { 'font-size': 10, 'text-anchor': 'middle', fill: '#222222', class: 'value-label' }));
    });
    body.push(text(x + g.w / 2, M.top + H + 20, g.label, { 'font-size': 12, 'text-anchor': 'middle', 'font-weight': 'bold', class: 'group-label' }));
    body.push('</g>');
    x += g.w + groupGap;
  }
  // reference line on top of the bars so it stays visible
  body.push(line(M.left, py(50), M.left + plotW, py(50), '#C00000', 'class="reference" stroke-width="1.5" stroke-dasharray="6 4"'));
  body.push(text(M.left + plotW + 6, py(50) + 4, '50 = no effect', { 'font-size': 11, fill: '#C00000' }));
  body.push(text(M.left + plotW / 2, M.top + H + 44, 'attack', { 'font-size': 12, 'text-anchor': 'middle', class: 'axis-label' }));
  body.push(...legend(M.left + plotW + M.right, M.top + 12, entries, 'Defense'));
  body.push(text(16, height - 8, 'Bars: mean over seeds; whiskers: ±1 sample std.', { 'font-size': 11, fill: MUTED }));
  return svgDocument(width, height, title, body);
}

/**
 * Builds the sweep report and writes report.md, report.csv, report.json, asr_vs_acc.svg and
 * der_by_defense.svg through writeFile (bare file names; the caller picks the folder or store).
 */
export async function renderSweepReport(
  records: SweepCellRecord[],
  sweep: string,
  writeFile: (name: string, content: string) => Promise<void>,
  /** the role the spec declared for the table's seeds (buildSweepReport) */
  opts: { seedRole?: SeedRole } = {},
): Promise<SweepReport & { files: string[] }> {
  const report = buildSweepReport(records, { sweep, seedRole: opts.seedRole });
  const files: Array<[string, string]> = [
    [SWEEP_REPORT_FILES.markdown, report.markdown],
    [SWEEP_REPORT_FILES.csv, report.csv],
    [SWEEP_REPORT_FILES.json, JSON.stringify(report.json, null, 2) + '\n'],
    [SWEEP_REPORT_FILES.asrVsAcc, asrVsAccSvg(report.rows, { title: `${sweep}: ASR vs ACC (purified models)` })],
    [SWEEP_REPORT_FILES.derByDefense, derByDefenseSvg(report.rows, { title: `${sweep}: DER by defense` })],
  ];
  for (const [name, content] of files) await writeFile(name, content);
  return { ...report, files: files.map(([name]) => name) };
}
