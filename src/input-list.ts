import { InputError } from './errors.js'

/**
 * A list input in the syntax the docker/*-actions accept: one CSV record per
 * line (comma separated, a field that starts with `"` is quoted and may hold
 * commas, newlines and `""` for a quote, blanks around it allowed; a quote
 * inside an unquoted field is an ordinary character), blank lines dropped, each item trimmed, empty
 * items dropped. With `ignoreComma` the fields of a line are joined again
 * (one item per line, its quotes resolved: build-args). Lines whose first
 * non-blank character is `#` are comments.
 */
export interface ListOptions {
  ignoreComma?: boolean
}

export function parseInputList(text: string, input: string, options: ListOptions = {}): string[] {
  const items: string[] = []
  for (const record of csvRecords(text, input)) {
    const fields = options.ignoreComma ? [record.join(',')] : record
    for (const field of fields) {
      const item = field.trim()
      if (item !== '') items.push(item)
    }
  }
  return items
}

/** The CSV records of `text`, comment and blank lines skipped. */
function csvRecords(text: string, input: string): string[][] {
  const records: string[][] = []
  let pos = 0
  let line = 1
  while (pos < text.length) {
    const end = lineEnd(text, pos)
    const raw = text.slice(pos, end)
    if (raw.trim() === '' || raw.trimStart().startsWith('#')) {
      pos = next(text, end)
      line++
      continue
    }
    const record: string[] = []
    const startLine = line
    for (;;) {
      // Blanks around a quoted value are allowed (csv-parse's ltrim/rtrim).
      let blank = pos
      while (text[blank] === ' ' || text[blank] === '\t') blank++
      if (text[blank] === '"') pos = blank
      if (text[pos] === '"') {
        let field = ''
        let i = pos + 1
        for (;;) {
          const quote = text.indexOf('"', i)
          if (quote < 0) throw new InputError(input, `line ${startLine}: a quoted value has no closing quote`)
          field += text.slice(i, quote)
          line += text.slice(i, quote).split('\n').length - 1
          if (text[quote + 1] === '"') {
            field += '"'
            i = quote + 2
            continue
          }
          pos = quote + 1
          break
        }
        record.push(field)
        while (text[pos] === ' ' || text[pos] === '\t') pos++
        const after = text[pos]
        if (after === ',') {
          pos++
          continue
        }
        if (after === undefined || after === '\n' || (after === '\r' && text[pos + 1] === '\n')) break
        throw new InputError(input, `line ${line}: a quoted value must be followed by a comma or the end of the line, got ${JSON.stringify(after)}`)
      }
      const fieldEnd = Math.min(lineEnd(text, pos), commaAt(text, pos))
      record.push(text.slice(pos, fieldEnd))
      pos = fieldEnd
      if (text[pos] === ',') {
        pos++
        continue
      }
      break
    }
    records.push(record)
    pos = next(text, lineEnd(text, pos))
    line++
  }
  return records
}

/** Index of the end of the line starting at or containing `pos` (before `\r\n` or `\n`). */
function lineEnd(text: string, pos: number): number {
  const nl = text.indexOf('\n', pos)
  const end = nl < 0 ? text.length : nl
  return end > pos && text[end - 1] === '\r' ? end - 1 : end
}

function commaAt(text: string, pos: number): number {
  const comma = text.indexOf(',', pos)
  return comma < 0 ? text.length : comma
}

/** Index after the line break at `end`. */
function next(text: string, end: number): number {
  if (text[end] === '\r' && text[end + 1] === '\n') return end + 2
  return end + 1
}
