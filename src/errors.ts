/**
 * A bad action input: the message names the input and what was expected.
 * `where` is the input's name, optionally followed by a place inside it
 * (`mounts line 3`, `mounts[0]`): `input` is the name alone, `location` the
 * rest, `detail` what was wrong.
 */
export class InputError extends Error {
  readonly input: string
  readonly location: string
  constructor(
    where: string,
    readonly detail: string
  ) {
    super(`Input "${where}": ${detail}`)
    this.name = 'InputError'
    const cut = where.search(/[ [(]/)
    this.input = cut < 0 ? where : where.slice(0, cut)
    this.location = cut < 0 ? '' : where.slice(cut).trim()
  }
}

/** A command that exited non-zero (or could not start). */
export class CommandError extends Error {
  constructor(
    readonly argv: readonly string[],
    readonly exitCode: number | null,
    readonly stderrTail: string,
    cause?: unknown
  ) {
    const tail = lastMeaningfulLine(stderrTail)
    // The cause (our side of a pipe failed: the output could not be written, a
    // full disk) is usually why the command died; the command only says "broken pipe".
    const reason = cause === undefined ? '' : errorMessage(cause)
    const because = reason !== '' && !tail.includes(reason) ? ` (${reason})` : ''
    super(`${argv.slice(0, 3).join(' ')} failed (exit ${exitCode ?? 'none'})${tail ? `: ${tail}` : ''}${because}`, { cause })
    this.name = 'CommandError'
  }
}

/** An archive that is not safe or not readable; `code` is stable for tests and logs. */
export class ArchiveError extends Error {
  constructor(
    readonly code: ArchiveErrorCode,
    message: string,
    readonly entry?: string
  ) {
    super(message)
    this.name = 'ArchiveError'
  }
}

export type ArchiveErrorCode =
  | 'ARCHIVE_PATH_UNSAFE'
  | 'ARCHIVE_PATH_ESCAPE'
  | 'ARCHIVE_LINK_UNSAFE'
  | 'ARCHIVE_ENTRY_TYPE'
  | 'ARCHIVE_MODE_UNSAFE'
  | 'ARCHIVE_HEADER_INVALID'
  | 'ARCHIVE_NOT_FILE'
  | 'ARCHIVE_TOO_LARGE'
  | 'ARCHIVE_UNEXPECTED'
  /** A delta entry that is malformed or does not fit the entries it applies to. */
  | 'ARCHIVE_DELTA_INVALID'

/** The last non-empty line of a command's stderr, which is where docker puts the reason. */
export function lastMeaningfulLine(text: string): string {
  const lines = text
    .split(/\r?\n/)
    .map(l => l.trim())
    .filter(l => l !== '')
  return lines.at(-1) ?? ''
}

/** Message of anything thrown, for warnings. */
export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}
