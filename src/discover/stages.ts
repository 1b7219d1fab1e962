import { flagFields } from './mount-flag.js'
import type { ParsedDockerfile } from './parser.js'

/**
 * The stages a build target needs, as BuildKit's Dockerfile frontend
 * (dockerfile2llb convert.go) finds them: the target stage, and
 * transitively every stage it builds on (`FROM <stage>`), copies from
 * (`COPY --from=<stage>`) or mounts from (`RUN --mount=...,from=<stage>`).
 * A reference is a stage name (case-insensitive) or, when no stage has that
 * name, a stage index; anything else is an image. Stage names are matched
 * after expanding the global ARGs in `FROM` and `COPY --from`, as BuildKit
 * does; `from=` of a mount is never expanded (BuildKit refuses variables
 * there).
 */
export interface StageInfo {
  /** Stage labels in order: the `AS` name, or BuildKit's `stage-N`. */
  labels: string[]
  /** Declared names, lowercased, in order (unnamed stages left out). */
  names: string[]
}

/** Stage labels and names of a parsed Dockerfile. */
export function stageInfo(parsed: ParsedDockerfile): StageInfo {
  const labels: string[] = []
  const names: string[] = []
  for (const ins of parsed.instructions) {
    if (ins.keyword !== 'FROM') continue
    const name = stageName(ins.args)
    labels.push(name ?? `stage-${labels.length}`)
    if (name !== undefined) names.push(name)
  }
  return { labels, names }
}

/** The `AS name` of a FROM's arguments, lowercased. */
export function stageName(args: string): string | undefined {
  const words = args.split(/[\t\v\f\r ]+/).filter(w => w !== '')
  return words.length === 3 && words[1]!.toLowerCase() === 'as' ? words[2]!.toLowerCase() : undefined
}

/**
 * Indexes of the stages `target` needs, or undefined when no stage has
 * that name. `expand` expands a word with the global ARGs (null when it
 * cannot).
 */
export function neededStages(parsed: ParsedDockerfile, target: string, expand: (word: string) => string | null): Set<number> | undefined {
  // Per stage: its base (only an earlier stage can be one) and what it copies or mounts from (any stage).
  const refs: { ref: string; base: boolean }[][] = []
  const byName = new Map<string, number>()
  for (const ins of parsed.instructions) {
    if (ins.keyword === 'FROM') {
      const index = refs.length
      const name = stageName(ins.args)
      if (name !== undefined && !byName.has(name)) byName.set(name, index)
      const base = ins.args.split(/[\t\v\f\r ]+/).find(w => w !== '')
      const expanded = base === undefined ? null : expand(base)
      refs.push(expanded === null ? [] : [{ ref: expanded, base: true }])
      continue
    }
    const own = refs.at(-1)
    if (own === undefined) continue
    for (const flag of ins.flags) {
      if (ins.keyword === 'COPY' && flag.startsWith('--from=')) {
        const value = expand(flag.slice('--from='.length))
        if (value !== null) own.push({ ref: value, base: false })
      } else if (ins.keyword === 'RUN' && flag.startsWith('--mount=')) {
        const from = mountFrom(flag.slice('--mount='.length))
        if (from !== undefined) own.push({ ref: from, base: false })
      }
    }
  }
  const resolve = ({ ref, base }: { ref: string; base: boolean }, stage: number): number | undefined => {
    const index = byName.get(ref.toLowerCase()) ?? (/^\d+$/.test(ref) ? Number(ref) : undefined)
    if (index === undefined || index >= refs.length || index === stage || (base && index > stage)) return undefined
    return index
  }
  const start = byName.get(target.toLowerCase())
  if (start === undefined) return undefined
  const needed = new Set<number>()
  const queue = [start]
  while (queue.length > 0) {
    const index = queue.pop()!
    if (needed.has(index)) continue
    needed.add(index)
    for (const ref of refs[index] ?? []) {
      const dep = resolve(ref, index)
      if (dep !== undefined) queue.push(dep)
    }
  }
  return needed
}

/** The `from=` of a `--mount` value, or undefined (none, or a value that does not parse). */
function mountFrom(value: string): string | undefined {
  try {
    const from = flagFields(value).find(([key]) => key === 'from')
    return from?.[1] || undefined
  } catch {
    return undefined
  }
}
