/**
 * The Temporal contract: everything a client, a worker and a workflow must agree on.
 * Task queue names live here and nowhere else; workflow code may import this module
 * (it is pure: no Node, TensorFlow or SDK client code).
 */
export const ORCHESTRATION_TASK_QUEUE = 'ntml-orchestration';
export const TRAINING_TASK_QUEUE = 'ntml-training';
