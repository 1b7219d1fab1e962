import { type Sharing } from '../mounts/spec.js'

/**
 * The value of a RUN instruction's `--mount` flag, read as BuildKit reads it
 * (moby/buildkit frontend/dockerfile/instructions/commands_runmount.go
 * parseMount): one CSV record of `key=value` fields, case-insensitive keys,
 * every value variable-expanded by the caller's `expand`. Where BuildKit
 * would fail the build the parser throws with BuildKit's reason, so a mount
 * the build would refuse is never persisted.
 */

/** One `--mount` flag as BuildKit reads it, after variable expansion. */
export interface MountOptions {
  type: string
  id?: string
  target?: string
  uid?: number
  gid?: number
  mode?: number
  sharing?: Sharing
  from?: string
  source?: string
  readonly: boolean
}

const MOUNT_TYPES = new Set(['bind', 'cache', 'tmpfs', 'secret', 'ssh'])
const SHARINGS = new Set(['shared', 'private', 'locked'])
const MAX_UINT32 = 2 ** 32 - 1

/**
 * Parses a `--mount` flag value (without `--mount=`) with BuildKit's rules:
 * CSV fields (quotes as encoding/csv), case-insensitive keys, every value
 * expanded by `expand`, uid/gid decimal and mode octal 32-bit numbers,
 * `type` defaulting to bind. Throws with BuildKit's reason where BuildKit
 * would fail the build.
 */
export function parseMountFlag(value: string, expand: (word: string) => string = word => word): MountOptions {
  const m: MountOptions = { type: 'bind', readonly: false }
  let readonlyGiven = false
  for (const [key, raw] of flagFields(value)) {
    if (raw === undefined) {
      if (key === 'readonly' || key === 'ro' || key === 'readwrite' || key === 'rw') {
        m.readonly = key === 'readonly' || key === 'ro'
        readonlyGiven = true
        continue
      }
      if (key === 'required' && (m.type === 'secret' || m.type === 'ssh')) continue
      if (key === 'required') throw new Error(`unexpected key 'required' for mount type '${m.type}'`)
      throw new Error(`invalid field '${key}' must be a key=value pair`)
    }
    const field = `${key}=${raw}`
    if (key === 'from') {
      const dollar = raw.indexOf('$')
      if (dollar >= 0 && dollar !== raw.length - 1) {
        throw new Error("'from' doesn't support variable expansion, define alias stage instead")
      }
    }
    const v = expand(raw)
    switch (key) {
      case 'type': {
        const type = v.toLowerCase()
        if (!MOUNT_TYPES.has(type)) throw new Error(`unsupported mount type "${v}"`)
        m.type = type
        break
      }
      case 'from':
        m.from = v
        break
      case 'source':
      case 'src':
        m.source = v
        break
      case 'target':
      case 'dst':
      case 'destination':
        m.target = v
        break
      case 'readonly':
      case 'ro':
        m.readonly = parseBool(v, key)
        readonlyGiven = true
        break
      case 'readwrite':
      case 'rw':
        m.readonly = !parseBool(v, key)
        readonlyGiven = true
        break
      case 'required':
        if (m.type !== 'secret' && m.type !== 'ssh') throw new Error(`unexpected key 'required' for mount type '${m.type}'`)
        parseBool(v, key)
        break
      case 'size':
        if (m.type !== 'tmpfs') throw new Error(`unexpected key 'size' for mount type '${m.type}'`)
        break
      case 'id':
        m.id = v
        break
      case 'sharing': {
        const sharing = v.toLowerCase()
        if (!SHARINGS.has(sharing)) throw new Error(`unsupported sharing value "${v}"`)
        m.sharing = sharing as Sharing
        break
      }
      case 'mode':
        m.mode = parseUint32(v, 8, 'mode')
        break
      case 'uid':
        m.uid = parseUint32(v, 10, 'uid')
        break
      case 'gid':
        m.gid = parseUint32(v, 10, 'gid')
        break
      case 'env':
        break
      default:
        throw new Error(`unexpected key '${key}' in '${field}'`)
    }
  }
  const fileInfoAllowed = m.type === 'secret' || m.type === 'ssh' || m.type === 'cache'
  if (!fileInfoAllowed) {
    for (const name of ['mode', 'uid', 'gid'] as const) {
      if (m[name] !== undefined) throw new Error(`${name} not allowed for "${m.type}" type mounts`)
    }
  }
  if (!readonlyGiven) m.readonly = !(m.type === 'cache' || m.type === 'tmpfs')
  if (m.sharing !== undefined && m.type !== 'cache') throw new Error(`invalid cache sharing set for ${m.type} mount`)
  return m
}

/** The mount's type, expanding only the `type` values, so a bind or secret mount's other fields are never judged. */
export function mountType(value: string, expand: (word: string) => string): string {
  let type = 'bind'
  for (const [key, raw] of flagFields(value)) if (key === 'type' && raw !== undefined) type = expand(raw).toLowerCase()
  return type
}

/**
 * The fields of a `--mount` value as BuildKit splits them: one CSV record,
 * each field `key=value` (key lowercased, value as written) or a bare key
 * (value undefined). The one splitter of mount flags, for the Dockerfile's
 * and the `mounts` input's. Throws with BuildKit's reason on bad CSV.
 */
export function flagFields(value: string): [string, string | undefined][] {
  return csvFields(value).map(field => {
    const eq = field.indexOf('=')
    return eq < 0 ? [field.toLowerCase(), undefined] : [field.slice(0, eq).toLowerCase(), field.slice(eq + 1)]
  })
}

/** A boolean option value as BuildKit reads it (Go's strconv.ParseBool). */
export function parseBool(text: string, key: string): boolean {
  if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(text)) return true
  if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(text)) return false
  throw new Error(`invalid value for ${key}: ${text}`)
}

function parseUint32(text: string, base: 8 | 10, name: string): number {
  const digits = base === 8 ? /^[0-7]+$/ : /^[0-9]+$/
  const n = digits.test(text) ? parseInt(text, base) : NaN
  if (!(n <= MAX_UINT32)) throw new Error(`invalid value ${text} for ${name}`)
  return n
}

/** One CSV record with encoding/csv's default rules (tonistiigi/go-csvvalue in BuildKit). */
function csvFields(line: string): string[] {
  let rest = line.endsWith('\r\n') ? line.slice(0, -2) : line.endsWith('\n') ? line.slice(0, -1) : line
  if (rest === '') throw new Error('failed to parse csv mounts: EOF')
  const fields: string[] = []
  for (;;) {
    if (!rest.startsWith('"')) {
      const comma = rest.indexOf(',')
      const field = comma < 0 ? rest : rest.slice(0, comma)
      if (field.includes('"')) throw new Error('failed to parse csv mounts: bare " in non-quoted field')
      fields.push(field)
      if (comma < 0) return fields
      rest = rest.slice(comma + 1)
      continue
    }
    let field = ''
    let i = 1
    for (;;) {
      const quote = rest.indexOf('"', i)
      if (quote < 0) throw new Error('failed to parse csv mounts: extraneous or missing " in quoted field')
      field += rest.slice(i, quote)
      const next = rest[quote + 1]
      if (next === '"') {
        field += '"'
        i = quote + 2
      } else if (next === ',') {
        fields.push(field)
        rest = rest.slice(quote + 2)
        break
      } else if (next === undefined) {
        fields.push(field)
        return fields
      } else {
        throw new Error('failed to parse csv mounts: extraneous or missing " in quoted field')
      }
    }
  }
}
