export * from './purify';
export * from './report';
export * from './sweep';
export * from './defense';
export * from './audit';
