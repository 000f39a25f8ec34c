/** Small text helpers shared by the commands. */
import type { PurifyOutcome } from '../workflows/contract';

export function duration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  if (h) return `${h}h ${String(m).padStart(2, '0')}m`;
  if (m) return `${m}m ${String(sec).padStart(2, '0')}s`;
  return `${sec}s`;
}

/**
 * A schedule's interval in the largest unit that divides it whole ("1 day", "6 h", "90 min",
 * "45 s"); seconds with their fraction when not even seconds are whole ("1.5 s").
 */
export function intervalText(ms: number): string {
  const units: Array<[number, (n: number) => string]> = [
    [86_400_000, (n) => `${n} ${n === 1 ? 'day' : 'days'}`],
    [3_600_000, (n) => `${n} h`],
    [60_000, (n) => `${n} min`],
    [1000, (n) => `${n} s`],
  ];
  for (const [unit, text] of units) if (ms > 0 && ms % unit === 0) return text(ms / unit);
  return `${ms / 1000} s`;
}

/** "m:ss" (or "h:mm:ss") elapsed clock for progress lines. */
export function clock(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = String(s % 60).padStart(2, '0');
  return h ? `${h}:${String(m).padStart(2, '0')}:${sec}` : `${m}:${sec}`;
}

/** Local time as YYYYMMDD-HHMMSS, for run ids. */
export function timestamp(d = new Date()): string {
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}${p(d.getMonth() + 1)}${p(d.getDate())}-${p(d.getHours())}${p(d.getMinutes())}${p(d.getSeconds())}`;
}

const pct = (v: number | undefined) => (v === undefined || Number.isNaN(v) ? '-' : v.toFixed(1));

/** Plain-text table of the summary a finished workflow returns (for `purify status`). */
export function summaryTable(summary: PurifyOutcome['summary']): string {
  const rows: Array<[string, string, string, string]> = [['model', 'ACC %', 'ASR %', 'RA %']];
  const m = summary.metrics;
  const add = (label: string, x: { acc: number; asr?: number; ra?: number } | undefined) => {
    if (x) rows.push([label, pct(x.acc), pct(x.asr), pct(x.ra)]);
  };
  add('backdoored (standard)', m.standard);
  add('NT student', m.ntStudent);
  add('teacher', m.teacher);
  add(summary.defense && summary.defense !== 'NT-ML' ? `defended (${summary.defense})` : 'purified (final)', m.final);
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  const line = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  const out = [line(rows[0]), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.slice(1).map(line)];
  if (summary.der !== undefined) out.push('', `DER ${summary.der.toFixed(1)} (50 = no effect, 100 = backdoor removed at no accuracy cost)`);
  if (summary.split) {
    out.push(`split distillation: estimated target class ${summary.split.estimatedTarget}, kept ${(100 * summary.split.keptFraction).toFixed(1)}% of the training inputs`);
  }
  if (summary.stages.length) {
    out.push('', `stages: ${summary.stages.map((s) => `${s.stage} ${s.seconds.toFixed(1)}s${s.resumedFromEpoch ? ` (resumed from epoch ${s.resumedFromEpoch})` : ''}`).join(', ')}`);
  }
  return out.join('\n');
}
