import { posix } from 'node:path'

import { flagFields, parseBool } from '../discover/mount-flag.js'
import { unquoteFlag } from '../discover/parser.js'
import { errorMessage, InputError } from '../errors.js'

/**
 * One BuildKit cache mount to persist. `uid`, `gid` and `mode` are part of
 * BuildKit's cache identity: they are kept exactly as the user gave them
 * (undefined = not given), because giving `uid=0` explicitly may select a
 * different cache than leaving it out.
 */
export interface MountSpec {
  id: string
  target: string
  uid?: number
  gid?: number
  /** Octal permission bits as a number, e.g. 0o755. */
  mode?: number
  sharing?: Sharing
  /** Glob patterns hashed into this mount's key instead of the step's key-files. */
  keyFiles?: string[]
  /** Paths or globs, relative to the mount root, left out of the saved archive. */
  exclude?: string[]
  /** Bytes above which this mount is not saved. */
  maxSize?: number
}

export type Sharing = 'shared' | 'private' | 'locked'

const SHARINGS: readonly string[] = ['shared', 'private', 'locked']

/**
 * Characters allowed in a cache-mount id. They are written verbatim into a
 * `--mount=` flag of a generated Dockerfile, so anything the flag parser or
 * variable expansion would interpret (`,` `"` `'` `=` `$` `\` whitespace) is
 * refused rather than escaped.
 */
const ID_PATTERN = /^[A-Za-z0-9_./][A-Za-z0-9_.:@+/-]*$/
const MAX_ID_LENGTH = 200
/**
 * Characters allowed in a target. It never reaches generated text (the
 * generated builds mount at their own paths), but it is the default id and
 * shows up in logs and the job summary: no whitespace, quotes, `$`, `\`,
 * `#`, `,`, `=`, glob or control characters.
 */
const TARGET_PATTERN = /^\/[A-Za-z0-9_.:@+~%/-]*$/
const MAX_TARGET_LENGTH = 1024
/** key-files and exclude patterns: one pattern per entry, no control characters (a newline would split it in two). */
const MAX_PATTERN_LENGTH = 1024
const MAX_ID = 2 ** 31 - 1

/** Cleans a path the way BuildKit does for a default cache id (filepath.Clean). */
export function cleanTarget(target: string): string {
  const cleaned = posix.normalize(target)
  return cleaned.length > 1 && cleaned.endsWith('/') ? cleaned.slice(0, -1) : cleaned
}

/**
 * Parses the `mounts` input: either a JSON array of objects, or one mount per
 * line in the same `key=value,key=value` form as a Dockerfile `--mount` flag
 * (`type=cache` may be given and is then required to be `cache`).
 */
export function parseMounts(text: string, inputName = 'mounts', options: ParseOptions = {}): MountSpec[] {
  const trimmed = text.trim()
  if (trimmed === '') return []
  const raw: [Record<string, unknown>, string][] = trimmed.startsWith('[')
    ? parseJsonList(trimmed, inputName).map((entry, index) => [entry, `${inputName}[${index}]`])
    : trimmed
        .split(/\r?\n/)
        .map((line, index) => [line.trim(), `${inputName} line ${index + 1}`] as const)
        .filter(([line]) => line !== '' && !line.startsWith('#'))
        .map(([line, where]) => [parseFlagLine(line, where), where])
  const mounts = raw.map(([entry, where]) => toMountSpec(entry, where, options))
  const seen = new Set<string>()
  for (const m of mounts) {
    if (seen.has(m.id)) {
      throw new InputError(inputName, `cache id "${m.id}" is listed twice; each id may appear once`)
    }
    seen.add(m.id)
  }
  return mounts
}

function parseJsonList(text: string, inputName: string): Record<string, unknown>[] {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (error) {
    // The parser's message quotes the input: keep it on one line and short.
    // eslint-disable-next-line no-control-regex
    const reason = (error as Error).message.replace(/[\u0000-\u001f\u007f\u2028\u2029]+/g, ' ')
    throw new InputError(inputName, `is not valid JSON: ${truncate(reason)}`)
  }
  if (!Array.isArray(value) || value.some(v => typeof v !== 'object' || v === null || Array.isArray(v))) {
    throw new InputError(inputName, 'must be a JSON array of objects like {"id": "npm", "target": "/root/.npm"}')
  }
  return value as Record<string, unknown>[]
}

/**
 * One line in the Dockerfile flag's syntax, read by the Dockerfile
 * discovery's own flag parser: quotes and escapes as in a Dockerfile
 * (`target="/root/.npm"`), then BuildKit's CSV fields. Spaces around fields
 * and empty fields are tolerated.
 */
function parseFlagLine(line: string, where: string): Record<string, unknown> {
  const body = line.startsWith('--mount=') ? line.slice('--mount='.length) : line
  let fields: [string, string | undefined][]
  try {
    fields = flagFields(unquoteFlag(body))
  } catch (error) {
    throw new InputError(where, errorMessage(error))
  }
  // No prototype: option names like "__proto__" or "constructor" are plain (unknown) keys.
  const out: Record<string, unknown> = Object.create(null) as Record<string, unknown>
  for (const [rawName, rawValue] of fields) {
    const name = rawName.trim()
    if (name === '' && (rawValue === undefined || rawValue.trim() === '')) continue
    if (Object.hasOwn(out, name)) throw new InputError(where, `option ${quoted(name)} is given twice`)
    out[name] = rawValue === undefined ? true : rawValue.trim()
  }
  return out
}

const KNOWN_FIELDS = new Set([
  'type',
  'id',
  'target',
  'dst',
  'destination',
  'uid',
  'gid',
  'mode',
  'sharing',
  'readonly',
  'ro',
  'readwrite',
  'rw',
  'key-files',
  'exclude',
  'max-size'
])

export interface ParseOptions {
  /**
   * Allow entries with an id but no target: they add options (key-files,
   * exclude, max-size) to a mount found in the Dockerfile. Their target is ''.
   */
  partial?: boolean
}

function toMountSpec(entry: Record<string, unknown>, where: string, options: ParseOptions = {}): MountSpec {
  for (const name of Object.keys(entry)) {
    if (!KNOWN_FIELDS.has(name)) {
      const hint = entry[name] === true ? '; several key-files or exclude patterns are separated by ";"' : ''
      throw new InputError(
        where,
        `unknown option ${quoted(name)} (expected id, target, uid, gid, mode, sharing, readonly, key-files, exclude, max-size${hint})`
      )
    }
  }
  if (entry.type !== undefined && entry.type !== 'cache') {
    throw new InputError(where, `type must be "cache", got ${quoted(String(entry.type))}`)
  }
  for (const name of ['readonly', 'ro', 'readwrite', 'rw']) readonlyOption(entry[name], where, name)
  const targetRaw = entry.target ?? entry.dst ?? entry.destination
  if (targetRaw === undefined && options.partial && typeof entry.id === 'string') {
    return withOptions({ id: validId(entry.id, where), target: '' }, entry, where)
  }
  if (targetRaw === undefined && typeof entry.id === 'string' && entry.id !== '') {
    throw new InputError(
      where,
      `id ${quoted(entry.id)} needs a target path (target=/path as in the Dockerfile), or a Dockerfile that declares this cache: set file or dockerfile to add options to the mounts it declares`
    )
  }
  if (typeof targetRaw !== 'string' || targetRaw === '') {
    throw new InputError(where, 'needs a target path (target=/path as in the Dockerfile)')
  }
  if (!targetRaw.startsWith('/')) {
    throw new InputError(where, `target must be an absolute path, got ${quoted(targetRaw)}`)
  }
  const target = cleanTarget(targetRaw)
  const id = validId(entry.id === undefined ? target : entry.id, where)
  if (target.length > MAX_TARGET_LENGTH || !TARGET_PATTERN.test(target)) {
    throw new InputError(
      where,
      `target ${quoted(targetRaw)} must be an absolute path of at most ${MAX_TARGET_LENGTH} letters, digits and . _ - : @ + ~ % /`
    )
  }
  return withOptions({ id, target }, entry, where)
}

function validId(id: unknown, where: string): string {
  if (typeof id !== 'string' || id === '') throw new InputError(where, 'id must be a non-empty string')
  if (id.length > MAX_ID_LENGTH || !ID_PATTERN.test(id)) {
    throw new InputError(where, `id ${quoted(id)} must be at most ${MAX_ID_LENGTH} characters of letters, digits and . _ - : @ + /`)
  }
  return id
}

/** Adds the optional fields of `entry` to `spec`. */
function withOptions(spec: MountSpec, entry: Record<string, unknown>, where: string): MountSpec {
  const uid = optionalNumber(entry.uid, where, 'uid')
  const gid = optionalNumber(entry.gid, where, 'gid')
  const mode = optionalMode(entry.mode, where)
  if (uid !== undefined) spec.uid = uid
  if (gid !== undefined) spec.gid = gid
  if (mode !== undefined) spec.mode = mode
  if (entry.sharing !== undefined) {
    if (typeof entry.sharing !== 'string' || !SHARINGS.includes(entry.sharing)) {
      throw new InputError(where, `sharing must be one of ${SHARINGS.join(', ')}, got ${quoted(String(entry.sharing))}`)
    }
    spec.sharing = entry.sharing as Sharing
  }
  const keyFiles = optionalPatterns(entry['key-files'], where, 'key-files')
  if (keyFiles !== undefined) spec.keyFiles = keyFiles
  const exclude = optionalPatterns(entry.exclude, where, 'exclude')
  if (exclude !== undefined) {
    for (const p of exclude) {
      if (p.startsWith('/') || p.split('/').includes('..')) {
        throw new InputError(where, `exclude pattern ${quoted(p)} must be relative to the mount root, without ".."`)
      }
    }
    spec.exclude = exclude
  }
  if (entry['max-size'] !== undefined) spec.maxSize = parseSize(entry['max-size'], where, 'max-size')
  return spec
}

/**
 * readonly, ro, readwrite, rw: valid BuildKit options of a cache mount
 * (bare, or a boolean as BuildKit reads it). They change how the build
 * mounts the cache, not which cache it is, so they are checked and left out.
 */
function readonlyOption(value: unknown, where: string, name: string): void {
  if (value === undefined || typeof value === 'boolean') return
  try {
    parseBool(String(value), name)
  } catch {
    throw new InputError(where, `${name} must be true or false (or given without a value), got ${quoted(String(value))}`)
  }
}

/**
 * A pattern list of one mount: a JSON string array, or patterns separated
 * by `;` (key-files also by `,`, reachable in a quoted field or JSON).
 */
function optionalPatterns(value: unknown, where: string, name: string): string[] | undefined {
  if (value === undefined) return undefined
  const list = typeof value === 'string' ? value.split(name === 'key-files' ? /[;,]/ : ';') : value
  if (!Array.isArray(list) || list.some(p => typeof p !== 'string')) {
    throw new InputError(where, `${name} must be glob patterns (separated by ";" in the line form)`)
  }
  const patterns = (list as string[]).map(p => p.trim()).filter(p => p !== '')
  if (patterns.length === 0) throw new InputError(where, `${name} is empty`)
  for (const p of patterns) {
    // eslint-disable-next-line no-control-regex
    if (p.length > MAX_PATTERN_LENGTH || /[\u0000-\u001f\u007f]/.test(p)) {
      throw new InputError(where, `${name} pattern ${quoted(p)} has control characters or is too long`)
    }
  }
  return patterns
}

const SIZE_UNITS: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 }

/** A byte size like 500M, 2G, 1.5g or 1048576 (binary units). */
export function parseSize(value: unknown, where: string, name: string): number {
  const text = String(value).trim()
  const match = /^(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?$/i.exec(text)
  if (!match) throw new InputError(where, `${name} must be a size like 500M or 2G, got ${quoted(text)}`)
  return Math.floor(Number(match[1]) * (SIZE_UNITS[(match[2] ?? '').toLowerCase()] ?? 1))
}

function optionalNumber(value: unknown, where: string, name: string): number | undefined {
  if (value === undefined) return undefined
  const text = typeof value === 'number' ? String(value) : value
  if (typeof text !== 'string' || !/^\d{1,10}$/.test(text) || Number(text) > MAX_ID) {
    throw new InputError(where, `${name} must be a non-negative integer, got ${quoted(String(value))}`)
  }
  return Number(text)
}

function optionalMode(value: unknown, where: string): number | undefined {
  if (value === undefined) return undefined
  // A JSON number is read as its decimal digits (0755 cannot be written in JSON).
  const text = typeof value === 'number' ? String(value) : value
  if (typeof text !== 'string' || !/^0?[0-7]{1,4}$/.test(text)) {
    throw new InputError(where, `mode must be an octal number like 0755, got ${quoted(String(value))}`)
  }
  return parseInt(text, 8)
}

function truncate(text: string): string {
  return text.length > 60 ? `${text.slice(0, 57)}...` : text
}

/** A value in an error message: JSON-quoted (no raw newline or quote reaches the log), truncated. */
function quoted(text: string): string {
  return JSON.stringify(truncate(text))
}

/** Formats a mode the way the Dockerfile expects it (octal, leading zero). */
export function formatMode(mode: number): string {
  return `0${mode.toString(8)}`
}

/**
 * A mount spec from a record in the input's own field names (what the job
 * state stores): run through the same checks as the `mounts` input, and
 * refused with an InputError naming `where` when it would not pass them.
 */
export function specFromRecord(value: unknown, where: string): MountSpec {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new InputError(where, 'must be an object')
  const entry = value as Record<string, unknown>
  if (typeof entry.target !== 'string' || entry.target === '') throw new InputError(where, 'needs a target path')
  return toMountSpec(entry, where)
}
