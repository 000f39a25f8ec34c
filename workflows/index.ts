export * from './purify';
export * from './sweep';
