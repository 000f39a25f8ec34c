/** Sweep spec expansion (pure): the defense axis and the base's defense. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { expandSweep, parseSweepSpec } from '../../schemas/sweep';

const base = { mode: 'evaluation', tier: 'ci', data: { format: 'synthetic' }, attack: { name: 'badnets' } };

test('expandSweep: without a defense axis the cells keep the base defense', () => {
  const cells = expandSweep(parseSweepSpec({ name: 's', base: { ...base, defense: { name: 'none' } }, grid: { seed: [1, 2] } }));
  assert.equal(cells.length, 2);
  assert.ok(cells.every((c) => (c.config.defense as { name: string }).name === 'none' && c.axes.defense === 'none'));
  const ntml = expandSweep(parseSweepSpec({ name: 's', base, grid: { seed: [1] } }));
  assert.equal((ntml[0].config.defense as { name: string }).name, 'ntml');
});

test('expandSweep: baseline settings sit beside the name and label the cell', () => {
  const cells = expandSweep(parseSweepSpec({ name: 's', base, grid: { defense: [{ name: 'ft', steps: 20 }, { name: 'ntml', ntml: { ntLabel: 'hard' } }] } }));
  assert.deepEqual(cells.map((c) => c.axes.defense), ['ft(steps=20)', 'ntml(ntLabel=hard)']);
  assert.deepEqual(cells[0].config.defense, { name: 'ft', steps: 20 });
  assert.throws(() => parseSweepSpec({ name: 's', base, grid: { defense: [{ name: 'ft', ntml: { tau: 2 } }] } }), /NT-ML switches given to defense ft/);
});
