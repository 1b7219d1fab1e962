import { relativeEntryPath } from './entry.js'

/**
 * Compiles exclude patterns: `*` and `?` stay within one path segment, `**`
 * crosses segments; a pattern matching a directory excludes all below it.
 */
export function excludeMatcher(patterns: string[] = []): (path: string) => boolean {
  if (patterns.length === 0) return () => false
  const regexes = patterns.map(p => {
    const clean = relativeEntryPath(p)
    let re = ''
    for (let i = 0; i < clean.length; i++) {
      const c = clean[i] ?? ''
      if (c === '*' && clean[i + 1] === '*') {
        re += '.*'
        i++
      } else if (c === '*') re += '[^/]*'
      else if (c === '?') re += '[^/]'
      else re += c.replace(/[.+^${}()|[\]\\]/g, '\\$&')
    }
    return new RegExp(`^${re}$`)
  })
  return path => {
    if (path === '') return false
    const parts = path.split('/')
    for (let i = 1; i <= parts.length; i++) {
      const prefix = parts.slice(0, i).join('/')
      if (regexes.some(r => r.test(prefix))) return true
    }
    return false
  }
}
