/**
 * What every store does with the bytes it read for an artifact: they must be the ones the
 * reference names (sha256 and size), whichever medium they came from.
 */
import { ArtifactIntegrityError, ArtifactNotFoundError } from './errors';
import { sha256Hex } from './keys';
import type { ArtifactRef, ArtifactStore } from './types';

/** Throws ArtifactIntegrityError (naming `uri`, expected and actual) unless `data` is the artifact `ref` names. */
export function checkArtifactBytes(uri: string, ref: ArtifactRef, sha: string, data: Uint8Array): void {
  const actual = sha256Hex(data);
  if (data.byteLength !== ref.bytes || actual !== sha) {
    throw new ArtifactIntegrityError(uri, { sha256: sha, bytes: ref.bytes }, { sha256: actual, bytes: data.byteLength });
  }
}

/**
 * Whether `store.get(ref)` returns the artifact intact: false when it is missing or corrupt; any
 * other error (an outage, bad credentials) is thrown, since it says nothing about the artifact.
 */
export async function artifactIntact(store: Pick<ArtifactStore, 'get'>, ref: ArtifactRef): Promise<boolean> {
  try {
    await store.get(ref);
    return true;
  } catch (err) {
    if (err instanceof ArtifactNotFoundError || err instanceof ArtifactIntegrityError) return false;
    throw err;
  }
}
