/**
 * Which config fields a pipeline stage reads. A stage declares them as dotted paths into the
 * parsed purify config (`ntml.mlEpochs`; `attack` covers every field under it); its cache key
 * is built from the values at exactly those paths, and the stage runs on a view of the config
 * that refuses every other read. A stage that starts reading a new field therefore fails
 * loudly instead of silently reusing results computed with another value of that field.
 */

/** A declared read: a path, or a path whose value enters the key only through a projection. */
export type ConfigRead =
  | string
  | {
      path: string;
      /** the only thing about the value the stage depends on (so cells may share a result) */
      keyedAs: (value: unknown) => unknown;
    };

export const readPath = (r: ConfigRead) => (typeof r === 'string' ? r : r.path);

/**
 * True when a read of `path` is keyed: it lies at or under a declared path, or, for a read of
 * an object's presence only, above one (the declared value below is null when it is absent).
 */
export function isCovered(path: string, reads: readonly ConfigRead[], kind: ReadKind = 'value'): boolean {
  return reads.some((r) => {
    const p = readPath(r);
    return path === p || path.startsWith(`${p}.`) || (kind === 'presence' && (path === '' || p.startsWith(`${path}.`)));
  });
}

/** `value`: a value, a key's presence or an object's key set; `presence`: an object was reached (read into next) */
export type ReadKind = 'value' | 'presence';

function valueAt(root: unknown, path: string): unknown {
  let v = root;
  for (const part of path.split('.')) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<string, unknown>)[part];
  }
  return v;
}

/** The declared paths' values (projected where declared), the config part of a stage key. */
export function declaredValues(config: object, reads: readonly ConfigRead[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const r of reads) {
    const value = valueAt(config, readPath(r));
    // null, not undefined: canonical JSON drops undefined, and "absent" must still be keyed
    out[readPath(r)] = typeof r === 'string' ? (value ?? null) : (r.keyedAs(value) ?? null);
  }
  return out;
}

/**
 * A view of `config` that calls `onRead(path, kind)` for every read: a property's value, the
 * presence of a key (`'arch' in model`), or the key set of an object (spreading, iterating).
 * Nested objects come back as views too (the same view each time, so identity holds); reaching
 * one is a `presence` read (a truthiness test of `cfg.testSet` depends on it).
 */
export function readTrackingView<T extends object>(config: T, onRead: (path: string, kind: ReadKind) => void): T {
  const views = new WeakMap<object, object>();
  const wrap = (target: object, prefix: string): object => {
    const known = views.get(target);
    if (known) return known;
    const at = (key: string | symbol) => (prefix ? `${prefix}.${String(key)}` : String(key));
    const view = new Proxy(target, {
      get(t, key, receiver) {
        const value = Reflect.get(t, key, receiver);
        // symbols (Symbol.iterator, toStringTag) and array lengths say nothing about values read
        if (typeof key === 'symbol' || typeof value === 'function') return value;
        if (Array.isArray(t) && key === 'length') {
          onRead(prefix, 'value');
          return value;
        }
        if (value !== null && typeof value === 'object' && !ArrayBuffer.isView(value)) {
          onRead(at(key), 'presence');
          return wrap(value, at(key));
        }
        onRead(at(key), 'value');
        return value;
      },
      has(t, key) {
        if (typeof key !== 'symbol') onRead(at(key), 'value');
        return Reflect.has(t, key);
      },
      ownKeys(t) {
        onRead(prefix, 'value');
        return Reflect.ownKeys(t);
      },
      set(_t, key) {
        throw new TypeError(`config view: the stage tried to change ${at(key)}; stages only read their config`);
      },
    });
    views.set(target, view);
    return view;
  };
  return wrap(config, '') as T;
}

export class UndeclaredConfigReadError extends Error {
  constructor(readonly stage: string, readonly path: string) {
    super(
      `stage ${stage} read config field ${path || '(the whole config)'}, which its declaration does not list; ` +
        'add it to the stage\'s reads (activities/stageDeclarations.ts) so the cache key covers it',
    );
    this.name = 'UndeclaredConfigReadError';
  }
}

/** The config as a stage sees it: every read outside its declaration throws. */
export function declaredView<T extends object>(config: T, stage: string, reads: readonly ConfigRead[]): T {
  return readTrackingView(config, (path, kind) => {
    if (!isCovered(path, reads, kind)) throw new UndeclaredConfigReadError(stage, path);
  });
}
