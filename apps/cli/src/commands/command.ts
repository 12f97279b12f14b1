/** The shape of a CLI command: a table entry, not a branch of a switch. */
import type { Registry } from '@ckpt/core';

/** A parseArgs option declaration. */
export interface OptionSpec {
  type: 'string' | 'boolean';
  short?: string;
  multiple?: boolean;
  /** One line for --help. */
  description?: string;
}

/** What a command receives. */
export interface CommandInput {
  positionals: string[];
  values: Record<string, string | boolean | (string | boolean)[] | undefined>;
  registry: Registry;
}

/** One `ckpt` subcommand. */
export interface Command {
  name: string;
  summary: string;
  usage: string;
  help: string;
  options: Record<string, OptionSpec>;
  /** It needs CAP_SYS_ADMIN and CAP_SYS_PTRACE (root): said before it starts. */
  privileged?: boolean;
  /** Returns the exit code. Throw `Error('usage')` for a wrong command line. */
  run(input: CommandInput): number | Promise<number>;
}
