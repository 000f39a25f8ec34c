/**
 * `--cron EXPR` checked before the schedule is sent: the server's answer to a bad expression
 * is an InvalidArgument that reached the user as an unexpected error (exit 1). Temporal's
 * cron strings: an optional CRON_TZ=/TZ= zone, then either a descriptor (@daily, @every 1h...)
 * or 5 fields (minute hour day-of-month month day-of-week), 6 (plus year; or seconds first)
 * or 7 (seconds first, year last); each field a comma list of *, ?, N, N-M, with /STEP.
 */

interface Field {
  name: string;
  min: number;
  max: number;
  /** three-letter names accepted for values (jan, mon) */
  names?: readonly string[];
  /** "?" (no specific value) is allowed */
  question?: boolean;
}

const MONTHS = ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'];
const DAYS = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'];
const SECOND: Field = { name: 'second', min: 0, max: 59 };
const MINUTE: Field = { name: 'minute', min: 0, max: 59 };
const HOUR: Field = { name: 'hour', min: 0, max: 23 };
const DAY_OF_MONTH: Field = { name: 'day-of-month', min: 1, max: 31, question: true };
const MONTH: Field = { name: 'month', min: 1, max: 12, names: MONTHS };
// 7 is Sunday again, as in most crons
const DAY_OF_WEEK: Field = { name: 'day-of-week', min: 0, max: 7, names: DAYS, question: true };
const YEAR: Field = { name: 'year', min: 1970, max: 9999 };
const DESCRIPTORS = ['@yearly', '@annually', '@monthly', '@weekly', '@daily', '@midnight', '@hourly'];

function valueProblem(text: string, f: Field): string | undefined {
  const named = f.names?.indexOf(text.toLowerCase()) ?? -1;
  if (named >= 0) return undefined;
  if (!/^\d+$/.test(text)) return `${f.name} "${text}" is not a number${f.names ? ` or a name (${f.names.slice(0, 3).join(', ')}, ...)` : ''}`;
  const n = Number(text);
  if (n < f.min || n > f.max) return `${f.name} ${n} is outside ${f.min}-${f.max}`;
  return undefined;
}

function fieldProblem(text: string, f: Field): string | undefined {
  for (const item of text.split(',')) {
    const [range, step, extra] = item.split('/');
    if (extra !== undefined || range === '' || step === '') return `${f.name} "${item}" is not N, N-M, * or a /STEP of them`;
    if (step !== undefined && !/^[1-9]\d*$/.test(step)) return `${f.name} step "${step}" is not a positive whole number`;
    if (range === '*') continue;
    if (range === '?') {
      if (f.question && step === undefined) continue;
      return `"?" is allowed only as the whole day-of-month or day-of-week`;
    }
    const bounds = range.split('-');
    if (bounds.length > 2) return `${f.name} "${range}" is not N or N-M`;
    for (const b of bounds) {
      const problem = valueProblem(b, f);
      if (problem) return problem;
    }
  }
  return undefined;
}

function fieldsProblem(fields: string[], layout: Field[]): string | undefined {
  for (let i = 0; i < layout.length; i++) {
    const problem = fieldProblem(fields[i], layout[i]);
    if (problem) return problem;
  }
  return undefined;
}

/** Why `expr` is not a cron string the Temporal server takes, or undefined when it is. */
export function cronProblem(expr: string): string | undefined {
  let rest = expr.trim();
  if (rest === '') return 'the expression is empty';
  const tz = /^(CRON_TZ|TZ)=(\S*)\s*/.exec(rest);
  if (tz) {
    if (!/^[A-Za-z][A-Za-z0-9_+\-/]*$/.test(tz[2])) return `${tz[1]}=${tz[2]}: expected a time zone name such as Europe/Berlin or UTC`;
    rest = rest.slice(tz[0].length);
    if (rest === '') return `${tz[1]}= is followed by no schedule`;
  }
  if (rest.startsWith('@')) {
    const every = /^@every\s+(\S+)$/.exec(rest);
    if (every) return /^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$/.test(every[1]) ? undefined : `@every takes a duration such as 90m or 1h30m, got "${every[1]}"`;
    if (DESCRIPTORS.includes(rest.toLowerCase())) return undefined;
    return `unknown descriptor "${rest}" (known: ${DESCRIPTORS.join(', ')}, @every DURATION)`;
  }
  const fields = rest.split(/\s+/);
  const standard = [MINUTE, HOUR, DAY_OF_MONTH, MONTH, DAY_OF_WEEK];
  if (fields.length === 5) return fieldsProblem(fields, standard);
  if (fields.length === 6) {
    // either reading of 6 fields is accepted; the message is the plain (year last) reading's
    const withYear = fieldsProblem(fields, [...standard, YEAR]);
    return withYear && fieldsProblem(fields, [SECOND, ...standard]) ? withYear : undefined;
  }
  if (fields.length === 7) return fieldsProblem(fields, [SECOND, ...standard, YEAR]);
  return `needs 5 fields (minute hour day-of-month month day-of-week), got ${fields.length}`;
}
