/**
 * Graceful stop of a training worker: process state that workers/training.ts sets and the
 * activities' checkpoint hooks read. On SIGTERM (a deploy, a scale-down, a node drain) the
 * SDK stops polling and gives running activities the shutdown grace time before cancelling
 * them. Training would otherwise use that time to start the next epoch and lose it at the
 * cancel; instead the checkpoint hooks check `draining()` after storing each epoch's
 * checkpoint and end the attempt there with a retryable failure, so another worker resumes
 * from exactly that epoch and this one exits within one epoch.
 */
import { ApplicationFailure } from '@temporalio/common';

let since: Date | undefined;

export function draining(): boolean {
  return since !== undefined;
}

/** Marks this process as shutting down (the training entry point calls it on SIGTERM/SIGINT). */
export function startDraining(): void {
  since ??= new Date();
}

export const WORKER_DRAINING = 'WorkerDraining';

/** The failure that hands the activity to another worker; retryable, so the workflow's retry policy schedules it again. */
export function drainedAfterEpoch(stage: string, epoch: number): ApplicationFailure {
  return ApplicationFailure.retryable(
    `worker shutting down: ${stage} stopped after checkpointing epoch ${epoch}; the next attempt resumes from it`,
    WORKER_DRAINING,
  );
}
