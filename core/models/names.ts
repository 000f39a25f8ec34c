/** Names of the built-in architectures and input encodings (pure: workflows import these). */
import { z } from 'zod';

export const architectureNames = ['tinyCnn', 'smallCnn', 'resnet20', 'preactResnet18'] as const;
export const ArchitectureName = z.enum(architectureNames);
export type ArchitectureName = z.infer<typeof ArchitectureName>;

export const InputRange = z.enum(['0-1', '0-255', '-1-1']).describe('pixel range the model expects');
export type InputRange = z.infer<typeof InputRange>;
