// The changes of the delta scenario (`npm run bench -- --changed PERCENT`):
// which files each run adds, rewrites and removes, and the busybox lines of
// the user build that make them. The picks come from a seeded generator, so
// every bench run makes the same changes to the same tree and two runs of the
// bench compare; each scenario run draws new picks from it.
//
// What changes, per run, for PERCENT of the tree's files: half that share
// added as new files, half rewritten with new content, and half of it again
// removed. A new file takes the size and directory of a file picked at
// random (the distribution of sizes stays the generator's); a rewrite keeps
// its file's size within ±10 %. Only the small files are picked (the
// generator's `d*/` directories and the files added since): the six large
// files hold 60 % of the bytes in 6 of 20,000 files, like a toolchain in a
// package cache, and one pick among them would decide the figures alone.
import type { BenchMount, DatasetPlan } from './dataset.js'
import { generatedSmallFiles } from './dataset.js'

/** The scenario's fixed seed: the same picks in every bench run. */
export const DELTA_SEED = 20260101

/** A small, seedable generator (mulberry32): uniform in [0, 1). */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

type MountName = BenchMount['name']

export interface TreeFile {
  mount: MountName
  /** Relative to the mount's root. */
  path: string
  size: number
}

/** One run's changes. */
export interface TreeChange {
  added: TreeFile[]
  /** With their new sizes. */
  rewritten: TreeFile[]
  removed: TreeFile[]
  /** Bytes of new content: the added and rewritten files. */
  newBytes: number
}

/** How many files one run adds, rewrites and removes for `percent` of `files`. */
export function changeCounts(files: number, percent: number): { added: number; rewritten: number; removed: number } {
  const changed = Math.round((files * percent) / 100)
  const added = Math.round(changed / 2)
  return { added, rewritten: changed - added, removed: Math.round(changed / 2) }
}

/**
 * The small files of the three mounts as they are after each run so far.
 * It is the bench's own record of the tree: the user build fails on a
 * removal or rewrite of a file it does not have, and the bench checks the
 * entry counts it prints against this record.
 */
export class TreeModel {
  private readonly files: TreeFile[]
  private readonly random: () => number
  private runs = 0

  constructor(plan: DatasetPlan, mounts: readonly MountName[], seed = DELTA_SEED) {
    this.files = mounts.flatMap(mount => generatedSmallFiles(plan.mounts[mount]).map(f => ({ mount, ...f })))
    this.random = seededRandom(seed)
  }

  get size(): number {
    return this.files.length
  }

  has(mount: MountName, path: string): boolean {
    return this.files.some(f => f.mount === mount && f.path === path)
  }

  /** Picks and applies the next run's changes (removals and rewrites are distinct files; added names are new). */
  next(counts: { added: number; rewritten: number; removed: number }): TreeChange {
    const run = ++this.runs
    if (counts.removed + counts.rewritten > this.files.length) throw new Error(`the tree has ${this.files.length} small files, too few to change`)
    const removed = this.take(counts.removed)
    const picked = this.take(counts.rewritten)
    const rewritten = picked.map(f => ({ ...f, size: Math.max(1, Math.round(f.size * (0.9 + 0.2 * this.random()))) }))
    this.files.push(...rewritten)
    const added: TreeFile[] = []
    for (let k = 0; k < counts.added; k++) {
      const template = this.files[this.index(this.files.length)] as TreeFile
      const dir = template.path.slice(0, template.path.lastIndexOf('/'))
      added.push({ mount: template.mount, path: `${dir}/n${run}-${k}`, size: template.size })
    }
    this.files.push(...added)
    const newBytes = [...added, ...rewritten].reduce((sum, f) => sum + f.size, 0)
    return { added, rewritten, removed, newBytes }
  }

  private index(length: number): number {
    return Math.min(length - 1, Math.floor(this.random() * length))
  }

  /** Removes `count` files picked at random from the record and returns them. */
  private take(count: number): TreeFile[] {
    const out: TreeFile[] = []
    for (let i = 0; i < count; i++) {
      const at = this.index(this.files.length)
      const [f] = this.files.splice(at, 1)
      out.push(f as TreeFile)
    }
    return out
  }
}

/**
 * Busybox sh lines that make a change in the mounts, each mount at its
 * target. `r FILE SIZE` writes SIZE random base64 characters (the
 * generator's content) into FILE, in place: a hardlinked file stays linked;
 * `a` does the same for a new file and gives it its directory's owner, as a
 * package manager running as that user would. Removals go first, without
 * `-f`: a file the record has and the tree has not fails the build.
 */
export function changeScript(change: TreeChange, targets: Record<MountName, string>): string[] {
  const at = (f: TreeFile): string => `${targets[f.mount]}/${f.path}`
  const lines = [
    `r() { head -c $(( $2 * 3 / 4 + 3 )) /dev/urandom | base64 -w 0 | head -c "$2" > "$1"; }`,
    `a() { r "$1" "$2" && chown "$(stat -c %u:%g "\${1%/*}")" "$1"; }`
  ]
  for (let i = 0; i < change.removed.length; i += 50)
    lines.push(
      `rm ${change.removed
        .slice(i, i + 50)
        .map(at)
        .join(' ')}`
    )
  for (const f of change.rewritten) lines.push(`r ${at(f)} ${f.size}`)
  for (const f of change.added) lines.push(`a ${at(f)} ${f.size}`)
  return lines
}
