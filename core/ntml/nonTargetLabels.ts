/**
 * Non-target labels: the standard model's output distribution with the given (possibly
 * poisoned) label removed. For a triggered image the backdoored model puts its mass on the
 * target, but the residual over the other classes still follows the image's content.
 */
import type { NtmlConfig } from './config';

export type NtTargets =
  | { kind: 'soft'; probs: Float32Array }
  | { kind: 'hard'; labels: Int32Array }
  | { kind: 'negative'; labels: Int32Array };

/**
 * @param probs softmax(f_std(x)/tau), row-major n x k, inference mode, no augmentation
 * @param given the training set's labels y~ (possibly poisoned)
 */
export function nonTargetTargets(
  probs: Float32Array,
  given: Int32Array,
  k: number,
  cfg: Pick<NtmlConfig, 'ntLabel' | 'mixEpsilon'>,
): NtTargets {
  const n = given.length;
  if (probs.length !== n * k) throw new Error(`expected ${n * k} probabilities, got ${probs.length}`);
  switch (cfg.ntLabel) {
    case 'negative':
      return { kind: 'negative', labels: Int32Array.from(given) };
    case 'hard': {
      const labels = new Int32Array(n);
      for (let i = 0; i < n; i++) {
        let best = -1;
        let bestP = -Infinity;
        for (let j = 0; j < k; j++) {
          if (j === given[i]) continue;
          const p = probs[i * k + j];
          if (p > bestP) {
            bestP = p;
            best = j;
          }
        }
        labels[i] = best;
      }
      return { kind: 'hard', labels };
    }
    case 'soft':
    case 'mix': {
      const out = new Float32Array(n * k);
      const eps = cfg.ntLabel === 'mix' ? cfg.mixEpsilon : 1;
      for (let i = 0; i < n; i++) {
        const y = given[i];
        const row = i * k;
        // 1 - p_y~, summed from the other classes: float32 rounding of p_y~ near 1 would
        // otherwise leave confident rows (the poisoned ones) summing to 1 +- a few percent
        let rest = 0;
        for (let j = 0; j < k; j++) if (j !== y) rest += probs[row + j];
        for (let j = 0; j < k; j++) {
          // a model certain of y~ leaves nothing to renormalise: spread uniformly over the rest
          const q = j === y ? 0 : rest > 0 ? probs[row + j] / rest : 1 / (k - 1);
          out[row + j] = eps * q + (j === y ? 1 - eps : 0);
        }
      }
      return { kind: 'soft', probs: out };
    }
  }
}

/** Layout: u32 header length, magic "NTMLNT1\n", JSON header, little-endian body. */
export function encodeNtTargets(t: NtTargets): Uint8Array {
  const body = t.kind === 'soft' ? t.probs : t.labels;
  const header = Buffer.from(JSON.stringify({ kind: t.kind, length: body.length }));
  const out = Buffer.alloc(12 + header.length + body.byteLength);
  out.writeUInt32LE(header.length, 0);
  out.write('NTMLNT1\n', 4, 'latin1');
  header.copy(out, 12);
  Buffer.from(body.buffer, body.byteOffset, body.byteLength).copy(out, 12 + header.length);
  return new Uint8Array(out.buffer, out.byteOffset, out.length);
}

export function decodeNtTargets(bytes: Uint8Array, source = 'NT labels'): NtTargets {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buf.length < 12 || buf.toString('latin1', 4, 12) !== 'NTMLNT1\n') throw new Error(`${source}: not an NT label artifact`);
  const headerLen = buf.readUInt32LE(0);
  if (12 + headerLen > buf.length) throw new Error(`${source}: truncated header`);
  let header: { kind: NtTargets['kind']; length: number };
  try {
    header = JSON.parse(buf.toString('utf8', 12, 12 + headerLen));
  } catch {
    throw new Error(`${source}: header is not valid JSON`);
  }
  const body = buf.subarray(12 + headerLen);
  const copy = new Uint8Array(body.length);
  copy.set(body);
  if (header.kind === 'soft') {
    if (body.length !== header.length * 4) throw new Error(`${source}: truncated`);
    return { kind: 'soft', probs: new Float32Array(copy.buffer) };
  }
  if (body.length !== header.length * 4) throw new Error(`${source}: truncated`);
  return { kind: header.kind, labels: new Int32Array(copy.buffer) };
}
