/**
 * The plugins the CLI loads: core and ckpt's own subsystems (registered
 * exactly like third-party plugins), plus any given with `--plugin`.
 */

import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { archS390Plugin } from '@ckpt/arch-s390';
import { archX86Plugin } from '@ckpt/arch-x86';
import { CkptError, type CkptPlugin, corePlugin, Registry } from '@ckpt/core';
import { credsPlugin } from '@ckpt/creds';
import { fsPlugin } from '@ckpt/fs';
import { ipcPlugin } from '@ckpt/ipc';
import { mmPlugin } from '@ckpt/mm';
import { nsPlugin } from '@ckpt/ns';

/** ckpt's own plugins, in registration order. */
export const builtinPlugins: readonly CkptPlugin[] = [
  corePlugin,
  archX86Plugin,
  archS390Plugin,
  mmPlugin,
  fsPlugin,
  ipcPlugin,
  nsPlugin,
  credsPlugin,
];

function isPlugin(x: unknown): x is CkptPlugin {
  return typeof x === 'object' && x !== null && typeof (x as CkptPlugin).name === 'string';
}

/**
 * Import a plugin module by package name or path. The module's default
 * export, or its export named `plugin`, must be a plugin object.
 */
export async function importPlugin(spec: string): Promise<CkptPlugin> {
  const target =
    spec.startsWith('.') || path.isAbsolute(spec) ? pathToFileURL(path.resolve(spec)).href : spec;
  let mod: Record<string, unknown>;
  try {
    mod = (await import(target)) as Record<string, unknown>;
  } catch (e) {
    throw new CkptError('ENOENT', `cannot load plugin '${spec}': ${(e as Error).message}`);
  }
  const candidate = mod.default ?? mod.plugin;
  if (!isPlugin(candidate)) {
    throw new CkptError(
      'EINVAL',
      `plugin '${spec}' does not export a plugin object (default export or 'plugin')`,
    );
  }
  return candidate;
}

/** A registry with the built-in plugins and the extra ones named. */
export async function loadRegistry(extra: readonly string[] = []): Promise<Registry> {
  const registry = new Registry(builtinPlugins);
  for (const spec of extra) registry.use(await importPlugin(spec));
  return registry;
}
