export * from './purify';
