export * from './purify';
export * from './report';
