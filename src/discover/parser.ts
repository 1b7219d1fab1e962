/**
 * The line structure of a Dockerfile, following BuildKit's parser (moby/buildkit
 * frontend/dockerfile/parser: parser.go, split_command.go, line_parsers.go):
 * parser directives, the escape character, line continuations, comment and
 * blank lines, heredoc bodies, and the split of an instruction into keyword,
 * builder flags (`--mount=...`) and arguments; plus the word splitting of ARG
 * and ENV arguments. Variables are left unexpanded: that is shell-lex.ts's job.
 * Only what cache-mount discovery needs is kept of each instruction.
 */

/** One instruction of a Dockerfile, as BuildKit's parser splits it. */
export interface Instruction {
  /** Upper-cased instruction name. */
  keyword: string
  /** Builder flags (`--mount=...`) with quotes and escapes removed, as BuildKit's flag parser sees them. */
  flags: string[]
  /** The rest of the instruction after the flags, continuations joined. */
  args: string
  line: number
}

export interface ParsedDockerfile {
  /** The escape character: `\\` unless a `# escape=` directive says otherwise. */
  escape: string
  instructions: Instruction[]
}

const DIRECTIVE = /^([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$/
const DIRECTIVES = new Set(['syntax', 'escape', 'check'])
const WHITESPACE = /[\t\v\f\r ]+/
const HEREDOC_KEYWORDS = new Set(['RUN', 'COPY', 'ADD'])

/**
 * Splits a Dockerfile into instructions the way BuildKit's parser does:
 * parser directives (only `# escape=` matters here) at the very top, comment
 * and blank lines skipped even inside continuations, the escape character
 * at the end of a line continuing it, and heredoc bodies of RUN/COPY/ADD
 * consumed so their lines are never read as instructions.
 */
export function parseDockerfile(content: string): ParsedDockerfile {
  const lines = content.split('\n').map(l => l.replace(/\r$/, ''))
  if (lines[0] !== undefined) lines[0] = lines[0].replace(/^\uFEFF/, '')
  let escape = '\\'
  let continuation = continuationPattern(escape)
  let directivesDone = false
  const seenDirectives = new Set<string>()
  const instructions: Instruction[] = []
  let i = 0
  while (i < lines.length) {
    const text = lines[i]!.trimStart()
    const line = ++i
    if (!directivesDone) {
      const match = text.startsWith('#') ? DIRECTIVE.exec(text.slice(1).trimStart()) : null
      const name = match?.[1]?.toLowerCase()
      if (match === null || name === undefined || !DIRECTIVES.has(name)) {
        directivesDone = true
      } else {
        if (seenDirectives.has(name)) throw new Error(`line ${line}: only one ${name} parser directive can be used`)
        seenDirectives.add(name)
        if (name === 'escape') {
          const value = match[2]!
          if (value !== '`' && value !== '\\') {
            throw new Error(`line ${line}: invalid escape token '${value}' does not match \` or \\`)
          }
          escape = value
          continuation = continuationPattern(escape)
        }
      }
    }
    if (text.startsWith('#')) continue
    let [joined, ended] = trimContinuation(text, continuation)
    if (ended && joined === '') continue
    while (!ended && i < lines.length) {
      const next = lines[i++]!
      if (next.trimStart().startsWith('#') || next.trim() === '') continue
      const [body, end] = trimContinuation(next, continuation)
      joined += body
      ended = end
    }
    const instruction = splitCommand(joined, escape, line)
    instructions.push(instruction)
    for (const heredoc of heredocs(instruction, joined)) {
      let terminated = false
      while (i < lines.length) {
        const candidate = lines[i++]!
        if ((heredoc.chomp ? candidate.replace(/^\t+/, '') : candidate) === heredoc.name) {
          terminated = true
          break
        }
      }
      if (!terminated) throw new Error(`line ${line}: unterminated heredoc`)
    }
  }
  return { escape, instructions }
}

function continuationPattern(escape: string): RegExp {
  const e = `\\${escape}`
  return new RegExp(`([^${e}])${e}[ \\t]*$|^${e}[ \\t]*$`)
}

function trimContinuation(line: string, pattern: RegExp): [string, boolean] {
  return pattern.test(line) ? [line.replace(pattern, '$1'), false] : [line, true]
}

function splitCommand(line: string, escape: string, lineNumber: number): Instruction {
  const trimmed = line.trim()
  const space = WHITESPACE.exec(trimmed)
  const keyword = (space === null ? trimmed : trimmed.slice(0, space.index)).toUpperCase()
  const rest = space === null ? '' : trimmed.slice(space.index + space[0].length)
  const { flags, args } = extractBuilderFlags(rest, escape)
  return { keyword, flags, args: args.trim(), line: lineNumber }
}

/** split_command.go extractBuilderFlags: leading `--` words, quotes and escapes removed. */
function extractBuilderFlags(line: string, escape: string): { flags: string[]; args: string } {
  const flags: string[] = []
  let pos = 0
  for (;;) {
    while (pos < line.length && /\s/.test(line[pos]!)) pos++
    if (pos >= line.length) return { flags, args: '' }
    if (line[pos] !== '-' || line[pos + 1] !== '-') return { flags, args: line.slice(pos) }
    const end = wordEnd(line, pos, escape)
    const { text, blankOk } = unquoted(line.slice(pos, end), escape)
    if (text === '--') return { flags, args: line.slice(end) }
    if (blankOk || text !== '') flags.push(text)
    pos = end
  }
}

/** Where the word starting at `pos` ends: at whitespace outside quotes, an escaped character never ending it. */
function wordEnd(line: string, pos: number, escape: string): number {
  let quote = ''
  for (let i = pos; i < line.length; i++) {
    const ch = line[i]!
    if (ch === escape) i++
    else if (quote !== '') {
      if (ch === quote) quote = ''
    } else if (ch === "'" || ch === '"') quote = ch
    else if (/\s/.test(ch)) return i
  }
  return line.length
}

/**
 * A builder flag with its quotes and escapes removed the way BuildKit's
 * extractBuilderFlags removes them (`target="/root/.npm"` is
 * `target=/root/.npm`): the one reading of a flag's quoting, for the
 * Dockerfile and for the `mounts` input's lines.
 */
export function unquoteFlag(text: string, escape = '\\'): string {
  const { text: out, open } = unquoted(text, escape)
  if (open !== '') throw new Error(`unexpected end of statement while looking for matching ${open === '"' ? 'double-quote' : 'single-quote'}`)
  return out
}

/** `blankOk`: the word had quotes, so an empty result is still a word; `open`: the quote left unterminated. */
function unquoted(raw: string, escape: string): { text: string; blankOk: boolean; open: string } {
  let text = ''
  let quote = ''
  let blankOk = false
  for (let pos = 0; pos < raw.length; pos++) {
    const ch = raw[pos]!
    if (ch === escape) {
      if (pos + 1 < raw.length) text += raw[++pos]
    } else if (quote === '' && (ch === "'" || ch === '"')) {
      quote = ch
      blankOk = true
    } else if (ch === quote) {
      quote = ''
    } else {
      text += ch
    }
  }
  return { text, blankOk, open: quote }
}

/**
 * parser.go heredocsFromLine: words of the whole line (quotes kept, `\`
 * always the escape here) shaped `[n]<<[-]NAME`; NAME loses its quotes.
 */
function heredocs(instruction: Instruction, line: string): { name: string; chomp: boolean }[] {
  let keyword = instruction.keyword
  let args = instruction.args
  if (keyword === 'ONBUILD') {
    const sub = splitCommand(args, '\\', instruction.line)
    keyword = sub.keyword
    args = sub.args
  }
  if (!HEREDOC_KEYWORDS.has(keyword) || !line.includes('<<') || isJsonArray(args)) return []
  const docs: { name: string; chomp: boolean }[] = []
  for (const word of rawWords(line.replace(/<<(-?)[ \t]+/g, '<<$1'))) {
    const match = /^\d*<<(-?)([^<]*)$/.exec(word)
    if (match === null || match[2] === '') continue
    const name = match[2]!.replace(/\\(.)|["']/g, '$1')
    if (name === '' || /\s/.test(name)) continue
    docs.push({ name, chomp: match[1] === '-' })
  }
  return docs
}

function isJsonArray(args: string): boolean {
  if (!args.startsWith('[')) return false
  try {
    const value: unknown = JSON.parse(args)
    return Array.isArray(value) && value.every(v => typeof v === 'string')
  } catch {
    return false
  }
}

/** Whitespace-separated words, quoted parts and escapes kept as written. */
function rawWords(line: string): string[] {
  const words: string[] = []
  let word = ''
  let quote = ''
  for (let i = 0; i < line.length; i++) {
    const ch = line[i]!
    if (quote === '' && /\s/.test(ch)) {
      if (word !== '') words.push(word)
      word = ''
      continue
    }
    word += ch
    if (ch === '\\' && quote !== "'" && i + 1 < line.length) word += line[++i]
    else if (quote === '' && (ch === '"' || ch === "'")) quote = ch
    else if (ch === quote) quote = ''
  }
  if (word !== '') words.push(word)
  return words
}

/** line_parsers.go parseWords: whitespace-separated words, quotes and escapes kept for the expander. */
function parseWords(rest: string, escape: string): string[] {
  const words: string[] = []
  let word = ''
  let blankOk = false
  let phase: 'spaces' | 'word' | 'quote' = 'spaces'
  let quote = ''
  const chars = [...rest]
  for (let pos = 0; pos <= chars.length; pos++) {
    let ch = chars[pos]
    if (phase === 'spaces') {
      if (ch === undefined) break
      if (/\s/u.test(ch)) continue
      phase = 'word'
    }
    if (ch === undefined) {
      if (blankOk || word !== '') words.push(word)
      break
    }
    if (phase === 'word') {
      if (/\s/u.test(ch)) {
        phase = 'spaces'
        if (blankOk || word !== '') words.push(word)
        word = ''
        blankOk = false
        continue
      }
      if (ch === "'" || ch === '"') {
        quote = ch
        blankOk = true
        phase = 'quote'
      }
      if (ch === escape) {
        if (pos + 1 === chars.length) continue
        word += ch
        ch = chars[++pos]!
      }
      word += ch
      continue
    }
    if (ch === quote) phase = 'word'
    if (ch === escape && quote !== "'") {
      if (pos + 1 === chars.length) {
        phase = 'word'
        continue
      }
      word += ch
      ch = chars[++pos]!
    }
    word += ch
  }
  return words
}

/** ARG words: `NAME` or `NAME=default` (default still to be expanded). */
export function argPairs(args: string, escape: string): [string, string | undefined][] {
  return parseWords(args, escape)
    .map((word): [string, string | undefined] => {
      const eq = word.indexOf('=')
      return eq < 0 ? [word, undefined] : [word.slice(0, eq), word.slice(eq + 1)]
    })
    .filter(([key]) => key !== '')
}

/** ENV pairs: `K=V ...`, or the legacy `K value with spaces` (values still to be expanded). */
export function envPairs(args: string, escape: string): [string, string][] {
  const words = parseWords(args, escape)
  if (words.length === 0) return []
  if (!words[0]!.includes('=')) {
    const space = WHITESPACE.exec(args)
    return space === null ? [] : [[args.slice(0, space.index), args.slice(space.index + space[0].length)]]
  }
  if (words.some(w => !w.includes('='))) return []
  return words.map(word => {
    const eq = word.indexOf('=')
    return [word.slice(0, eq), word.slice(eq + 1)]
  })
}
