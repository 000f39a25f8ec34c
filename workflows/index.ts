export * from './purify';
export * from './sweep';
export * from './audit';
