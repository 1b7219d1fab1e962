// The delta scenario of the bench (scripts/bench/delta*.ts): its seeded picks,
// the user build's change script, the content signature it checks fidelity
// with (run in busybox sh when the machine has it), and the log lines of the
// action it reads its figures from.
import { spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import { describe, expect, test } from '@jest/globals'

import { parseActionLog } from '../scripts/bench/action.js'
import { generatedSmallFiles, parseSignatures, planDataset, signatureFunction } from '../scripts/bench/dataset.js'
import { changeCounts, changeScript, seededRandom, TreeModel } from '../scripts/bench/delta-plan.js'

const MOUNTS = ['pkgs', 'tools', 'build'] as const

describe('the delta scenario picks', () => {
  const plan = planDataset(64 * 1024 * 1024, 2000)

  test('the seeded generator repeats itself and stays in [0, 1)', () => {
    const a = seededRandom(7)
    const b = seededRandom(7)
    const xs = Array.from({ length: 1000 }, () => a())
    expect(Array.from({ length: 1000 }, () => b())).toEqual(xs)
    expect(xs.every(x => x >= 0 && x < 1)).toBe(true)
    expect(new Set(xs).size).toBeGreaterThan(990)
    expect(seededRandom(8)()).not.toBe(seededRandom(7)())
  })

  test('PERCENT of the files changed, half added and half rewritten, half as many removed', () => {
    expect(changeCounts(20000, 1)).toEqual({ added: 100, rewritten: 100, removed: 100 })
    expect(changeCounts(2001, 1)).toEqual({ added: 10, rewritten: 10, removed: 10 })
    expect(changeCounts(20000, 5)).toEqual({ added: 500, rewritten: 500, removed: 500 })
  })

  test('the small files of a mount are the names and sizes the generator writes', () => {
    const files = generatedSmallFiles(plan.mounts.pkgs)
    const p = plan.mounts.pkgs
    expect(files).toHaveLength(p.dirs.reduce((s, d) => s + d.tiny + d.other, 0))
    expect(files[0]).toEqual({ path: 'd0000/t001', size: p.tinySize })
    expect(files.find(f => f.path === `d0000/o001`)?.size).toBe(p.otherSize)
    expect(new Set(files.map(f => f.path)).size).toBe(files.length)
  })

  test('each run picks distinct files to remove and rewrite, adds new names, and the same seed picks the same', () => {
    const model = new TreeModel(plan, MOUNTS)
    const again = new TreeModel(plan, MOUNTS)
    const start = model.size
    const counts = changeCounts(plan.files, 1)
    const seen = new Set<string>()
    for (let run = 1; run <= 5; run++) {
      const change = model.next(counts)
      expect(again.next(counts)).toEqual(change)
      const key = (f: { mount: string; path: string }): string => `${f.mount}:${f.path}`
      expect(change.removed).toHaveLength(counts.removed)
      expect(change.rewritten).toHaveLength(counts.rewritten)
      expect(change.added).toHaveLength(counts.added)
      const touched = [...change.removed, ...change.rewritten].map(key)
      expect(new Set(touched).size).toBe(touched.length)
      for (const f of change.removed) expect(model.has(f.mount, f.path)).toBe(false)
      for (const f of [...change.rewritten, ...change.added]) expect(model.has(f.mount, f.path)).toBe(true)
      for (const f of change.added) {
        expect(f.path).toMatch(new RegExp(`^d\\d{4}/n${run}-\\d+$`))
        expect(seen.has(key(f))).toBe(false)
        seen.add(key(f))
      }
      expect(change.newBytes).toBe([...change.added, ...change.rewritten].reduce((s, f) => s + f.size, 0))
    }
    expect(model.size).toBe(start + 5 * (counts.added - counts.removed))
    // Rewrites keep their size within ±10 %.
    const fresh = new TreeModel(plan, MOUNTS)
    const sizes = new Map(MOUNTS.flatMap(m => generatedSmallFiles(plan.mounts[m]).map(f => [`${m}:${f.path}`, f.size] as const)))
    for (const f of fresh.next(counts).rewritten) {
      const old = sizes.get(`${f.mount}:${f.path}`) as number
      expect(Math.abs(f.size - old)).toBeLessThanOrEqual(Math.ceil(old * 0.1))
    }
  })

  test('the change script removes without -f, rewrites in place and gives new files their directory owner', () => {
    const model = new TreeModel(plan, MOUNTS)
    const change = model.next({ added: 2, rewritten: 2, removed: 60 })
    const lines = changeScript(change, { pkgs: '/m/pkgs', tools: '/m/tools', build: '/m/build' })
    const rm = lines.filter(l => l.startsWith('rm '))
    expect(rm).toHaveLength(2)
    expect(
      rm
        .join(' ')
        .split(' ')
        .filter(w => w.startsWith('/m/'))
    ).toHaveLength(60)
    expect(rm.every(l => !l.includes(' -f'))).toBe(true)
    const first = change.rewritten[0] as { mount: string; path: string; size: number }
    expect(lines).toContain(`r /m/${first.mount}/${first.path} ${first.size}`)
    const added = change.added[0] as { mount: string; path: string; size: number }
    expect(lines).toContain(`a /m/${added.mount}/${added.path} ${added.size}`)
  })
})

const busybox = spawnSync('busybox', ['true']).status === 0

describe('the content signature', () => {
  const sig = (dir: string): { content?: string; meta: string; fileMtimes: string } => {
    const r = spawnSync('busybox', ['sh', '-c', `${signatureFunction({ content: true })}\necho "SIG t $(sig ${dir})"`], { encoding: 'utf8' })
    if (r.status !== 0) throw new Error(r.stderr)
    const s = parseSignatures(r.stdout).get('t')
    if (s === undefined) throw new Error(`no signature in ${r.stdout}`)
    return s
  }
  const sh = (script: string): void => {
    const r = spawnSync('busybox', ['sh', '-c', `set -e\n${script}`], { encoding: 'utf8' })
    if (r.status !== 0) throw new Error(r.stderr)
  }

  ;(busybox ? test : test.skip)('equal for a copy, different for new content of the same size and for other hardlink groups', () => {
    const root = mkdtempSync(join(tmpdir(), 'bmc-sig-'))
    try {
      const a = join(root, 'a')
      mkdirSync(join(a, 'd'), { recursive: true })
      writeFileSync(join(a, 'd', 'x'), 'hello')
      writeFileSync(join(a, 'd', 'y'), 'world')
      writeFileSync(join(a, 'd', 'z'), 'other')
      sh(`cd ${a} && ln d/x d/x-link && ln -s d/y s && touch -d @1000000000 d/x d/y d/z d/x-link d . && touch -h -d @1000000000 s`)
      sh(`cp -a ${a} ${root}/b`)
      const base = sig(a)
      expect(base.content).toMatch(/^[0-9a-f]{12}$/)
      expect(sig(join(root, 'b'))).toEqual(base)

      // Same size and mtime, other bytes: only the content digest sees it.
      sh(`cp -a ${a} ${root}/c && printf WORLD > ${root}/c/d/y && touch -d @1000000000 ${root}/c/d/y`)
      const c = sig(join(root, 'c'))
      expect({ ...c, content: '' }).toEqual({ ...base, content: '' })
      expect(c.content).not.toBe(base.content)

      // Four names of the same content, two links each: only which names share an inode differs.
      const pairs = (dir: string, [p, q]: [string, string], [r, t]: [string, string]): void =>
        sh(`mkdir -p ${dir} && cd ${dir} && printf same > ${p} && ln ${p} ${q} && printf same > ${r} && ln ${r} ${t} && touch -d @1000000000 * .`)
      pairs(join(root, 'e'), ['p', 'q'], ['r', 't'])
      pairs(join(root, 'f'), ['p', 'r'], ['q', 't'])
      const [e, f] = [sig(join(root, 'e')), sig(join(root, 'f'))]
      expect({ ...e, content: '' }).toEqual({ ...f, content: '' })
      expect(e.content).not.toBe(f.content)
    } finally {
      rmSync(root, { recursive: true, force: true })
    }
  })
})

describe('the action log lines of delta saves', () => {
  const post = [
    'Extracted 3 mount(s), 1.3 MiB in 4.2 s (loopback stream; 3 as delta(s) of what changed)',
    'bench-x-pkgs: saved bmc-bench-x-pkgs-linux-amd64-nofiles-0123456789abcdef-d2-0123456789ab (delta 2 of bmc-bench-x-pkgs-linux-amd64-nofiles-0123456789abcdef: 1.1 MiB in 57 changed entries, 5 removed, 0.4 s)',
    'bench-x-tools: saved bmc-bench-x-tools-linux-amd64-nofiles-fedcba9876543210 (64.0 MiB, 1.7 s)'
  ].join('\n')

  test('post: the extract time and how many went as deltas, and each save with its delta', () => {
    const log = parseActionLog(post)
    expect(log.extractSeconds).toBe(4.2)
    expect(log.extractMode).toBe('loopback stream')
    expect(log.extractDeltas).toBe(3)
    expect(log.extractNotRead).toBe(0)
    expect(log.saved).toEqual([
      {
        id: 'bench-x-pkgs',
        key: 'bmc-bench-x-pkgs-linux-amd64-nofiles-0123456789abcdef-d2-0123456789ab',
        seconds: 0.4,
        delta: { sequence: 2, base: 'bmc-bench-x-pkgs-linux-amd64-nofiles-0123456789abcdef', changedEntries: 57, removed: 5 }
      },
      { id: 'bench-x-tools', key: 'bmc-bench-x-tools-linux-amd64-nofiles-fedcba9876543210', seconds: 1.7 }
    ])
  })

  test('post: both remarks of the extract line', () => {
    const log = parseActionLog(
      'Extracted 3 mount(s), 1.3 MiB in 4.2 s (build exporter; 1 unchanged since inject, not read; 2 as delta(s) of what changed)'
    )
    expect(log).toMatchObject({ extractSeconds: 4.2, extractMode: 'build exporter', extractNotRead: 1, extractDeltas: 2 })
  })

  test('main: the chain each restore followed', () => {
    const log = parseActionLog(
      [
        'bench-x-pkgs: restored k-d5-0123456789ab (exact, base k + 5 delta(s), 512.0 MiB, 10234 entries, 3.1 s)',
        'bench-x-tools: restored t-0123456789abcdef (exact, 64.0 MiB, 12 entries, 0.9 s)'
      ].join('\n')
    )
    expect(log.restored).toEqual([
      { id: 'bench-x-pkgs', key: 'k-d5-0123456789ab', entries: 10234, seconds: 3.1, deltas: 5 },
      { id: 'bench-x-tools', key: 't-0123456789abcdef', entries: 12, seconds: 0.9, deltas: 0 }
    ])
  })
})
