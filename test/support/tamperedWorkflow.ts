/** A deliberately changed `purify` (first activity differs) used to prove replay catches it. */
import { proxyActivities } from '@temporalio/workflow';
import type * as activities from '../../activities';

const { planSplit } = proxyActivities<typeof activities>({ startToCloseTimeout: '1m' });

export async function purify(input: { config: unknown }): Promise<void> {
  await planSplit({ config: input.config, data: {} as never, student: {} as never, teacher: {} as never, standard: {} as never });
}
