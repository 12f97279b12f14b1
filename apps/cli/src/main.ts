/**
 * The `ckpt` command line: global options, then a subcommand from the
 * command table.
 */
import { parseArgs } from 'node:util';
import { CkptError, readStatus } from '@ckpt/core';
import pkg from '../package.json' with { type: 'json' };
import { checkCommand } from './commands/check.js';
import { checkpointCommand } from './commands/checkpoint.js';
import type { Command, OptionSpec } from './commands/command.js';
import { infoCommand } from './commands/info.js';
import { restartCommand } from './commands/restart.js';
import { runCommand } from './commands/run.js';
import { ExitCode, reportError, UsageError } from './output.js';
import { loadRegistry } from './plugins.js';

/** Every subcommand, in the order --help lists them. */
export const commands: readonly Command[] = [
  runCommand,
  checkpointCommand,
  restartCommand,
  infoCommand,
  checkCommand,
];

const globalOptions: Record<string, OptionSpec> = {
  help: {
    type: 'boolean',
    short: 'h',
    description: 'show help (ckpt COMMAND --help for a command)',
  },
  version: { type: 'boolean', short: 'V', description: 'print the version' },
  json: { type: 'boolean', description: 'machine-readable JSON output' },
  plugin: { type: 'string', multiple: true, description: 'load a plugin module (repeatable)' },
};

function optionLines(options: Record<string, OptionSpec>): string {
  return Object.entries(options)
    .map(([name, o]) => {
      const flag = `${o.short ? `-${o.short}, ` : '    '}--${name}${o.type === 'string' ? ' VALUE' : ''}`;
      return `  ${flag.padEnd(26)} ${o.description ?? ''}`;
    })
    .join('\n');
}

function mainHelp(): string {
  const list = commands.map((c) => `  ${c.name.padEnd(12)} ${c.summary}`).join('\n');
  return `ckpt ${pkg.version} — checkpoint and restart live Linux process trees

Usage: ckpt [options] COMMAND [args]

Commands:
${list}

Options:
${optionLines(globalOptions)}

Run 'ckpt COMMAND --help' for the options of a command.
`;
}

function commandHelp(c: Command): string {
  return `Usage: ${c.usage}

${c.help}

Options:
${optionLines({ ...c.options, ...globalOptions })}
`;
}

/** Run the CLI with `argv` (without node and script); returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  const name = argv.find((a) => !a.startsWith('-'));
  const command = commands.find((c) => c.name === name);
  const json = argv.includes('--json');
  try {
    if (name && !command) throw new UsageError(`unknown command '${name}'`);
    const options = { ...(command?.options ?? {}), ...globalOptions };
    let parsed: ReturnType<typeof parseArgs>;
    try {
      parsed = parseArgs({ args: argv, options, allowPositionals: true, strict: true });
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
    const { values, positionals } = parsed;
    if (values.version) {
      process.stdout.write(`${pkg.version}\n`);
      return ExitCode.OK;
    }
    if (!command) {
      process.stdout.write(mainHelp());
      return values.help ? ExitCode.OK : ExitCode.USAGE;
    }
    if (values.help) {
      process.stdout.write(commandHelp(command));
      return ExitCode.OK;
    }
    if (command.privileged) requirePrivileges(command.name);
    const registry = await loadRegistry((values.plugin as string[] | undefined) ?? []);
    try {
      return await command.run({ positionals: positionals.slice(1), values, registry });
    } catch (e) {
      if (e instanceof Error && e.message === 'usage')
        throw new UsageError(`usage: ${command.usage}`);
      throw e;
    }
  } catch (e) {
    return reportError(e, json);
  }
}

const CAP_SYS_PTRACE = 19n;
const CAP_SYS_ADMIN = 21n;
const CAP_CHECKPOINT_RESTORE = 40n;

/**
 * Refuse to start a command that needs privileges without them (it would
 * fail midway on some EPERM that does not say why): CAP_SYS_PTRACE, and
 * CAP_CHECKPOINT_RESTORE or CAP_SYS_ADMIN (for /proc/PID/map_files, pids
 * set with clone3).
 */
function requirePrivileges(name: string): void {
  const capEff = readStatus(process.pid).capEff;
  const has = (bit: bigint) => ((capEff >> bit) & 1n) === 1n;
  const missing = [
    has(CAP_SYS_PTRACE) ? '' : 'CAP_SYS_PTRACE',
    has(CAP_CHECKPOINT_RESTORE) || has(CAP_SYS_ADMIN)
      ? ''
      : 'CAP_CHECKPOINT_RESTORE (or CAP_SYS_ADMIN)',
  ].filter((m) => m !== '');
  if (missing.length > 0) {
    throw new CkptError(
      'EPERM',
      `ckpt ${name} needs root: it ptraces processes and reads their memory maps (${missing.join(' and ')} missing); run it as root, e.g. with sudo`,
    );
  }
}
