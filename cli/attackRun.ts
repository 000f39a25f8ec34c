/**
 * What `ntml attack preview --run ID` needs from a purify run: its attack config and seed (the
 * workflow's input), the poison record and test set its stages handed on (the results of
 * prepareData and, for a training-controlled attack, of the attacker's run in standard
 * training), read from the run's Temporal history; the artifacts come from the store.
 */
import type { Client } from '@temporalio/client';
import { decodeFromPayloadsAtIndex } from '@temporalio/common/lib/internal-non-workflow';
import type { Payload } from '@temporalio/common';
import { UserError } from './errors';
import { deriveSeed } from '../core/rng';
import { parsePurifyConfig, ConfigError } from '../schemas/purify';
import type { AttackConfig } from '../core/attacks/configs';
import type { DataRefs, TrainedModel } from '../workflows/contract';

export interface RunTrigger {
  attack: AttackConfig;
  attackSeed: number;
  poison: NonNullable<DataRefs['poison']>;
  test: NonNullable<DataRefs['test']>;
}

export async function runTrigger(client: Client, id: string): Promise<RunTrigger> {
  const converter = client.workflow.options.loadedDataConverter;
  const decode = <T>(payloads: Payload[] | null | undefined) => decodeFromPayloadsAtIndex<T>(converter, 0, payloads);
  let events;
  try {
    events = (await client.workflow.getHandle(id).fetchHistory()).events ?? [];
  } catch (err) {
    throw new UserError(`--run: cannot read the history of run ${id}: ${(err as Error).message.split('\n')[0]}`);
  }
  const started = events[0]?.workflowExecutionStartedEventAttributes;
  if (!started || started.workflowType?.name !== 'purify') {
    throw new UserError(`--run: ${id} is not a purify run (workflow type ${started?.workflowType?.name ?? 'unknown'})`);
  }
  const input = await decode<{ config: unknown }>(started.input?.payloads);
  let cfg;
  try {
    cfg = parsePurifyConfig(input.config);
  } catch (err) {
    if (err instanceof ConfigError) throw new UserError(`--run: the config of run ${id} no longer parses: ${err.message}`);
    throw err;
  }
  if (!cfg.attack) throw new UserError(`--run: run ${id} is in ${cfg.mode} mode: it has no attack to preview`);

  // the newest data refs with a poison record: prepareData's, or the attacker's run's
  const scheduled = new Map<string, string>();
  let data: DataRefs | undefined;
  for (const e of events) {
    const s = e.activityTaskScheduledEventAttributes;
    if (s) scheduled.set(String(e.eventId), s.activityType?.name ?? '');
    const done = e.activityTaskCompletedEventAttributes;
    if (!done) continue;
    const name = scheduled.get(String(done.scheduledEventId));
    if (name === 'prepareData') {
      const refs = await decode<DataRefs>(done.result?.payloads);
      if (refs.poison) data = refs;
    } else if (name === 'trainStandardModel') {
      const out = await decode<TrainedModel>(done.result?.payloads);
      if (out.data?.poison) data = out.data;
    }
  }
  if (!data?.poison) {
    throw new UserError(
      `--run: run ${id} has no poison record yet (a training-controlled attack records it when its standard-training stage ends; a learned trigger when prepareData ends)`,
    );
  }
  if (!data.test) throw new UserError(`--run: run ${id} has no test set to show the trigger on`);
  return { attack: cfg.attack, attackSeed: deriveSeed(cfg.seed, 'attack'), poison: data.poison, test: data.test };
}
