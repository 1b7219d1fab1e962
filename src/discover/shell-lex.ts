/**
 * Variable expansion of one Dockerfile word, following BuildKit's shell
 * lexer (moby/buildkit frontend/dockerfile/shell/lex.go ProcessWord): quote
 * removal, the Dockerfile's escape character, `$VAR`, `${VAR}` and the
 * `-`, `+`, `?` modifiers (with or without `:`).
 *
 * Unlike BuildKit it knows that some values cannot be known here (a base
 * image's ENV, a default that itself could not be expanded): a word that
 * depends on one throws UnresolvedVariableError instead of guessing, so the
 * caller can skip the mount with a warning rather than compute a wrong id.
 */

/** A variable's known value, or null when it is set to something unknowable here (e.g. an unresolvable default). */
export type Value = string | null

/** A variable's value: a string, null when set to something unknowable, undefined when unset. */
export type Lookup = (name: string) => Value | undefined

export interface ExpandOptions {
  lookup: Lookup
  /** The Dockerfile's escape character (`\` unless `# escape=` says otherwise). */
  escape?: string
  /**
   * Inside a stage the base image may set variables this module cannot see,
   * so an unset variable used without a default is unresolved; in the global
   * scope it is empty, as BuildKit makes it.
   */
  strict?: boolean
}

/** Variables whose value cannot be known here; the word cannot be expanded. */
export class UnresolvedVariableError extends Error {
  constructor(readonly names: string[]) {
    super(`cannot resolve ${names.map(n => `$${n}`).join(', ')}`)
    this.name = 'UnresolvedVariableError'
  }
}

interface Scanner {
  text: string
  pos: number
  escape: string
  lookup: Lookup
  strict: boolean
  unresolved: string[]
}

/**
 * Expands one word as BuildKit's shell lexer does: quotes removed (nothing
 * expands inside '...'), the escape character taken literally, `$VAR`,
 * `${VAR}`, `${VAR:-w}`, `${VAR-w}`, `${VAR:+w}`, `${VAR+w}`, `${VAR:?m}`,
 * `${VAR?m}`. Pattern forms (`#`, `%`, `/`) are refused rather than guessed.
 */
export function expandWord(word: string, options: ExpandOptions): string {
  const s: Scanner = {
    text: word,
    pos: 0,
    escape: options.escape ?? '\\',
    lookup: options.lookup,
    strict: options.strict ?? true,
    unresolved: []
  }
  const out = processUntil(s, undefined)
  if (s.unresolved.length > 0) throw new UnresolvedVariableError([...new Set(s.unresolved)])
  return out
}

function processUntil(s: Scanner, stop: string | undefined): string {
  let out = ''
  while (s.pos < s.text.length) {
    const ch = s.text[s.pos]!
    if (ch === stop) {
      s.pos++
      return out
    }
    if (ch === '$') out += processDollar(s)
    else if (ch === "'") out += processSingleQuote(s)
    else if (ch === '"') out += processDoubleQuote(s)
    else {
      s.pos++
      if (ch === s.escape) {
        if (s.pos >= s.text.length) break
        out += s.text[s.pos++]
      } else out += ch
    }
  }
  if (stop !== undefined) throw new Error(`unexpected end of statement while looking for matching ${stop}`)
  return out
}

function processSingleQuote(s: Scanner): string {
  const end = s.text.indexOf("'", s.pos + 1)
  if (end < 0) throw new Error('unexpected end of statement while looking for matching single-quote')
  const out = s.text.slice(s.pos + 1, end)
  s.pos = end + 1
  return out
}

function processDoubleQuote(s: Scanner): string {
  let out = ''
  s.pos++
  for (;;) {
    const ch = s.text[s.pos]
    if (ch === undefined) throw new Error('unexpected end of statement while looking for matching double-quote')
    if (ch === '"') {
      s.pos++
      return out
    }
    if (ch === '$') {
      out += processDollar(s)
      continue
    }
    s.pos++
    if (ch === s.escape) {
      const next = s.text[s.pos]
      if (next === undefined) continue
      if (next === '"' || next === '$' || next === s.escape) {
        out += next
        s.pos++
        continue
      }
    }
    out += ch
  }
}

function processDollar(s: Scanner): string {
  s.pos++
  if (s.text[s.pos] !== '{') {
    const name = processName(s)
    return name === '' ? '$' : valueOf(s, name)
  }
  s.pos++
  const first = s.text[s.pos]
  if (first === undefined) throw new Error("syntax error: missing '}'")
  if (first === '{' || first === '}' || first === ':') throw new Error('syntax error: bad substitution')
  const name = processName(s)
  const ch = s.text[s.pos++]
  if (ch === '}') return valueOf(s, name)
  if (ch === undefined) throw new Error("syntax error: missing '}'")
  const nullIsUnset = ch === ':'
  const op = nullIsUnset ? s.text[s.pos++] : ch
  if (op !== '-' && op !== '+' && op !== '?') {
    throw new Error(`the substitution modifier "${nullIsUnset ? ':' : ''}${op ?? ''}" in \${${name}...} is not supported here`)
  }
  const mark = s.unresolved.length
  const word = processUntil(s, '}')
  const wordUnresolved = s.unresolved.splice(mark)
  const value = s.lookup(name)
  if (value === null) {
    s.unresolved.push(name)
    return ''
  }
  const empty = value === undefined || (nullIsUnset && value === '')
  switch (op) {
    case '-':
      if (!empty) return value
      s.unresolved.push(...wordUnresolved)
      return word
    case '+':
      if (empty) return ''
      s.unresolved.push(...wordUnresolved)
      return word
    default:
      if (value === undefined && s.strict) {
        s.unresolved.push(name)
        return ''
      }
      if (!empty) return value
      throw new Error(`${name}: ${word !== '' ? word : `is not allowed to be ${value === undefined ? 'unset' : 'empty'}`}`)
  }
}

const NAME_CHAR = /^[\p{L}\p{Nd}_]$/u
const DIGIT = /^\p{Nd}$/u
const SPECIAL_PARAMS = '@*#?-$!0'

function processName(s: Scanner): string {
  const first = s.text[s.pos]
  if (first === undefined) return ''
  if (DIGIT.test(first)) {
    const start = s.pos
    while (s.pos < s.text.length && DIGIT.test(s.text[s.pos]!)) s.pos++
    return s.text.slice(start, s.pos)
  }
  if (SPECIAL_PARAMS.includes(first)) {
    s.pos++
    return first
  }
  const start = s.pos
  while (s.pos < s.text.length && NAME_CHAR.test(s.text[s.pos]!)) s.pos++
  return s.text.slice(start, s.pos)
}

function valueOf(s: Scanner, name: string): string {
  const value = s.lookup(name)
  if (value === null || (value === undefined && s.strict)) {
    s.unresolved.push(name)
    return ''
  }
  return value ?? ''
}
