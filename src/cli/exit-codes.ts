/**
 * The CLI's exit codes, in one place: main() returns them, --help and the
 * README's CLI section list them (a unit test keeps the README in step).
 */
export const EXIT_CODES = {
  ok: 0,
  failure: 1,
  usage: 2
} as const

export type ExitCode = (typeof EXIT_CODES)[keyof typeof EXIT_CODES]

/** What each code means, as --help prints it. */
export const EXIT_CODE_MEANINGS: readonly { code: ExitCode; meaning: string }[] = [
  {
    code: EXIT_CODES.ok,
    meaning: 'success, also when the cache had trouble (a store that is down, a corrupt entry, a failed inject or extract): warnings on stderr'
  },
  { code: EXIT_CODES.failure, meaning: 'the command could not do its job (e.g. ls or prune cannot reach the store)' },
  { code: EXIT_CODES.usage, meaning: 'usage error: an unknown command or option, a bad option value or input, an unreadable state file' }
]
