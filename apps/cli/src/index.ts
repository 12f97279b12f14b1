/**
 * ckpt's CLI as a library: run it programmatically, or reuse its plugin
 * loading.
 *
 * @packageDocumentation
 */
export type { Command, CommandInput, OptionSpec } from './commands/command.js';
export { commands, main } from './main.js';
export { builtinPlugins, importPlugin, loadRegistry } from './plugins.js';
