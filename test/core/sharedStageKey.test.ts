/**
 * Sweep groups and learned triggers: cells that differ only in fields a learned trigger does not
 * read (Narcissus' rate, test multiplier) share a group when the workflow asks for it; every
 * other difference still separates them, and other attacks are unaffected.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { sharedStageKey } from '../../schemas/sweep';
import { LEARNED_TRIGGER_IGNORES } from '../../core/attacks/configs';
import { getAttack } from '../../core/attacks/registry';

const cell = (attack: Record<string, unknown>, extra: Record<string, unknown> = {}) => ({ data: { format: 'synthetic' }, attack, cleanBudget: 100, seed: 1, tier: 'ci', ...extra });

test('Narcissus cells at other rates or multipliers share a group only with learned-trigger groups', () => {
  const a = cell({ name: 'narcissus', rate: 0.0005, testMultiplier: 3, linfRadius: 0.06 });
  const b = cell({ name: 'narcissus', rate: 0.01, testMultiplier: 2, linfRadius: 0.06 });
  assert.equal(sharedStageKey(a, { learnedTriggers: true }), sharedStageKey(b, { learnedTriggers: true }));
  assert.notEqual(sharedStageKey(a), sharedStageKey(b), 'the old grouping (replayed sweeps) is unchanged');
  // a field the trigger reads, another seed, another budget: other groups
  for (const other of [cell({ name: 'narcissus', rate: 0.01, testMultiplier: 3, linfRadius: 0.03 }), cell(a.attack, { seed: 2 }), cell(a.attack, { cleanBudget: 50 })]) {
    assert.notEqual(sharedStageKey(a, { learnedTriggers: true }), sharedStageKey(other, { learnedTriggers: true }));
  }
});

test('attacks without a learned trigger keep one group per config', () => {
  const x = cell({ name: 'badnets', rate: 0.1 });
  const y = cell({ name: 'badnets', rate: 0.05 });
  assert.notEqual(sharedStageKey(x, { learnedTriggers: true }), sharedStageKey(y, { learnedTriggers: true }));
  assert.equal(sharedStageKey(x, { learnedTriggers: true }), sharedStageKey(x));
});

test('the plugin keys its stored trigger by the same list the sweep groups by', () => {
  for (const [name, fields] of Object.entries(LEARNED_TRIGGER_IGNORES)) assert.deepEqual(getAttack(name).learnedTriggerIgnores, fields);
});
