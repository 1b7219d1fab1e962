import { createHash } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { connect, type Socket } from 'node:net'
import { join } from 'node:path'
import { Readable } from 'node:stream'

import type { CommandRunner, RunOptions, RunResult } from '../../src/builder/command.js'
import { CommandError } from '../../src/errors.js'
import { makeTar, readTar, type RawEntry, type ReadEntry } from './tar.js'

/**
 * A scripted stand-in for the docker CLI and a BuildKit builder, at the byte
 * level: it answers `docker buildx version`, and runs the generated inject
 * and extract builds by reading what the real RUN would read and writing
 * what it would write, against an in-memory "builder cache" per cache id.
 *
 *   inject   reads the build context (a tar on stdin, or a directory with
 *            the Dockerfile and mounts.tar) or, for a stream Dockerfile,
 *            connects to the action's listener (BMC_PORT/BMC_TOKEN build
 *            args) as `echo "$BMC_TOKEN" | nc HOST "$BMC_PORT" | tar -x`
 *            does; unpacks c<index>/... into the caches, applies the fix-up
 *            list (and fails when it is missing: `test -f /bmc/fixups`), and
 *            writes the manifests file as the build's result on stdout.
 *   extract  compares each mount's manifest with its BMC_MANIFEST_<index>
 *            argument, then produces the extract stream (the status file,
 *            then c<index>/... of every changed mount) to the listener or,
 *            for the exporter Dockerfile, as mounts.tar in the result tar.
 *
 * A manifest stands for BuildKit's ctime-based one: it changes whenever the
 * cache is written (an inject, a user build's write or touch).
 */
export interface BuilderFaults {
  /** `docker buildx version` fails (no buildx plugin). */
  noBuildx?: boolean
  /** A build asking for host networking is refused, as a docker-container builder without the entitlement does. */
  refuseHostNetwork?: boolean
  /** Builds of this kind (or every build) exit 1. */
  failBuilds?: 'inject' | 'extract' | 'all'
  /** The inject build's result has no manifests file. */
  noManifests?: boolean
  /** The extract stream leaves this mount index out (neither archived nor listed as unchanged). */
  extractOmits?: number
  /** The exporter's result lacks mounts.tar. */
  exportWithoutFile?: boolean
  /** The stream extract build exits 1 after sending everything, or after sending half the stream. */
  extractExit?: 'after-stream' | 'mid-stream'
  /** Answers any command (before the fake's own answers) when it returns a result; unknown commands exit 1. */
  other?: (command: string, args: readonly string[]) => RunResult | undefined
}

export interface FakeEntry {
  type: 'file' | 'directory' | 'symlink' | 'link'
  mode: number
  uid: number
  gid: number
  mtime: Date
  linkname?: string
  body: Buffer
}

interface FakeCache {
  /** By path relative to the mount root; '' is the root. */
  entries: Map<string, FakeEntry>
  generation: number
}

/** One build the fake ran, as the argv told it and the Dockerfile said. */
export interface BuildRecord {
  argv: string[]
  kind: 'inject' | 'extract'
  /** What the RUN used: the listener, the context file, or the exporter. */
  via: 'stream' | 'context' | 'export'
  network: string
  buildArgs: Record<string, string>
  /** The cache ids the Dockerfile mounts, by index. */
  mounts: Map<number, string>
  ok: boolean
}

interface ParsedArgv {
  network: string
  buildArgs: Record<string, string>
  context: string
  allow: string[]
}

interface ParsedDockerfile {
  kind: 'inject' | 'extract'
  via: 'stream' | 'context' | 'export'
  host?: string
  mounts: Map<number, { id: string; uid?: number; gid?: number; mode?: number; readonly: boolean }>
}

const T0 = new Date('2024-01-02T03:04:05Z')

export class FakeBuilder {
  readonly caches = new Map<string, FakeCache>()
  readonly builds: BuildRecord[] = []
  faults: BuilderFaults
  /** Called when a build ends, either way (a test's hook to release a slow download). */
  onBuildEnd?: () => void

  constructor(faults: BuilderFaults = {}) {
    this.faults = faults
  }

  /** The CommandRunner seam. */
  readonly run: CommandRunner = async (command, args, options = {}) => {
    const argv = [command, ...args]
    if (args[0] === 'buildx' && args[1] === 'version') {
      if (this.faults.noBuildx) throw new CommandError(argv, 1, "docker: 'buildx' is not a docker command.")
      return { stdout: 'github.com/docker/buildx v0.17.1 fake', stderr: '' }
    }
    const scripted = this.faults.other?.(command, args)
    if (scripted) return scripted
    if (args[0] === 'buildx' && args[1] === 'inspect') {
      // The docker driver: RUNs share the runner's network (the loopback stream, with host networking).
      return { stdout: 'Name:          default\nDriver:        docker\n\nNodes:\nName:      default\nStatus:    running\n', stderr: '' }
    }
    const buildAt = args[0] === 'buildx' && args[1] === 'build' ? 2 : args[0] === 'build' ? 1 : -1
    if (buildAt < 0) {
      throw new CommandError(argv, 1, `fake docker: unknown command ${args.slice(0, 2).join(' ')}`)
    }
    try {
      return await this.build(argv, parseArgv(args.slice(buildAt)), options)
    } finally {
      this.onBuildEnd?.()
    }
  }

  // --- the user's build, between main and post ---

  /** Writes a file into a cache as a user build's RUN would (parents created as needed). */
  write(id: string, path: string, body: string | Buffer, meta: Partial<Omit<FakeEntry, 'body' | 'type'>> = {}): void {
    const cache = this.cache(id)
    const parts = path.split('/')
    for (let i = 1; i < parts.length; i++) {
      const dir = parts.slice(0, i).join('/')
      if (!cache.entries.has(dir)) cache.entries.set(dir, { type: 'directory', mode: 0o755, uid: 0, gid: 0, mtime: T0, body: Buffer.alloc(0) })
    }
    cache.entries.set(path, { type: 'file', mode: 0o644, uid: 0, gid: 0, mtime: T0, ...meta, body: Buffer.from(body) })
    cache.generation++
  }

  /** Adds any entry (symlink, hardlink, directory) as a user build would. */
  put(id: string, path: string, entry: Partial<FakeEntry> & Pick<FakeEntry, 'type'>): void {
    const cache = this.cache(id)
    cache.entries.set(path, { mode: entry.type === 'directory' ? 0o755 : 0o644, uid: 0, gid: 0, mtime: T0, body: Buffer.alloc(0), ...entry })
    cache.generation++
  }

  /** Changes nothing but the ctime of the cache's files (a build that rewrote them with the same content). */
  touch(id: string): void {
    this.cache(id).generation++
  }

  /** The cache's content for assertions: path → file text, `dir`, `-> target` (symlink) or `=> target` (hardlink). */
  tree(id: string): Record<string, string> {
    const out: Record<string, string> = {}
    const cache = this.caches.get(id)
    if (!cache) return out
    for (const [path, e] of [...cache.entries].sort(([a], [b]) => (a < b ? -1 : 1))) {
      if (path === '') continue
      out[path] = e.type === 'file' ? e.body.toString() : e.type === 'directory' ? 'dir' : `${e.type === 'symlink' ? '->' : '=>'} ${e.linkname ?? ''}`
    }
    return out
  }

  entry(id: string, path: string): FakeEntry | undefined {
    return this.caches.get(id)?.entries.get(path)
  }

  /** The manifest the extract build would compute for the cache now. */
  manifest(id: string): string {
    return createHash('md5')
      .update(`${id}\0${this.cache(id).generation}`)
      .digest('hex')
  }

  // --- the builds ---

  private cache(id: string, root?: { uid?: number; gid?: number; mode?: number }): FakeCache {
    let cache = this.caches.get(id)
    if (!cache) {
      // As BuildKit creates a cache mount: an empty directory with the mount's uid, gid and mode.
      const rootEntry: FakeEntry = {
        type: 'directory',
        mode: root?.mode ?? 0o755,
        uid: root?.uid ?? 0,
        gid: root?.gid ?? 0,
        mtime: T0,
        body: Buffer.alloc(0)
      }
      cache = { entries: new Map([['', rootEntry]]), generation: 0 }
      this.caches.set(id, cache)
    }
    return cache
  }

  private async build(argv: string[], parsed: ParsedArgv, options: RunOptions): Promise<RunResult> {
    let dockerfile: string
    let contextFiles: ReadEntry[] = []
    if (parsed.context === '-') {
      if (!options.stdin) throw new CommandError(argv, 1, 'ERROR: context from stdin but nothing on stdin')
      contextFiles = await readTar(options.stdin)
      const df = contextFiles.find(e => e.header.name === 'Dockerfile')
      if (!df) throw new CommandError(argv, 1, 'ERROR: failed to solve: failed to read dockerfile: open Dockerfile: no such file or directory')
      dockerfile = df.body.toString()
    } else {
      dockerfile = await readFile(join(parsed.context, 'Dockerfile'), 'utf8')
    }
    const df = parseDockerfile(dockerfile)
    const record: BuildRecord = {
      argv,
      kind: df.kind,
      via: df.via,
      network: parsed.network,
      buildArgs: parsed.buildArgs,
      mounts: new Map([...df.mounts].map(([i, m]) => [i, m.id])),
      ok: false
    }
    this.builds.push(record)
    const fail = (stderr: string): never => {
      throw new CommandError(argv, 1, stderr)
    }
    // buildx grants host networking only when asked for (--allow); a builder without the entitlement refuses it.
    const asked = argv[1] !== 'buildx' || parsed.allow.includes('network.host')
    if (parsed.network === 'host' && (this.faults.refuseHostNetwork || !asked))
      fail('ERROR: failed to solve: granting entitlement network.host is not allowed')
    if (this.faults.failBuilds === 'all' || this.faults.failBuilds === df.kind)
      fail(`#7 ERROR: process "/bin/sh -c set -o pipefail ..." did not complete successfully: exit code: 1`)
    for (const m of df.mounts.values()) this.cache(m.id, m)

    let result: RawEntry[]
    if (df.kind === 'inject') {
      let stream: Buffer | Readable
      if (df.via === 'context') stream = await readFile(join(parsed.context, 'mounts.tar'))
      else stream = await this.dial(df, parsed, fail)
      let entries: ReadEntry[]
      try {
        entries = await readTar(stream)
      } catch (error) {
        return fail(`tar: short read (${String(error)})`)
      }
      this.unpack(df, entries, fail)
      const lines = [...df.mounts].map(([index, m]) => `${index} ${this.manifest(m.id)}`)
      result = [{ name: 'injected', body: `${parsed.buildArgs.BMC_NONCE ?? ''}\n` }]
      if (!this.faults.noManifests) result.unshift({ name: 'manifests', body: `${lines.join('\n')}\n` })
    } else {
      const stream = await this.extractStream(df, parsed)
      if (df.via === 'stream') {
        const socket = await this.dial(df, parsed, fail)
        const cut = this.faults.extractExit === 'mid-stream'
        // nc sends everything, then the connection closes once the action has read it to the end.
        await new Promise<void>((resolve, reject) => {
          socket.on('error', reject)
          socket.on('close', () => resolve())
          socket.end(cut ? stream.subarray(0, Math.floor(stream.length / 2)) : stream)
        }).catch(error => fail(`nc: ${String(error)}`))
        if (this.faults.extractExit) fail('#7 ERROR: process "/bin/sh -c ... | nc ..." did not complete successfully: exit code: 1')
        result = [{ name: 'extracted', body: 'streamed\n' }]
      } else {
        result = this.faults.exportWithoutFile ? [{ name: 'other', body: 'x' }] : [{ name: 'mounts.tar', body: stream }]
      }
    }
    const out = await makeTar(result)
    record.ok = true
    if (options.stdout) {
      // As runCommand: a stdout consumer's error (exit 0) is thrown as is.
      await options.stdout(Readable.from([out]))
      return { stdout: '', stderr: '' }
    }
    return { stdout: out.toString('latin1'), stderr: '' }
  }

  /** `echo "$BMC_TOKEN" | nc HOST "$BMC_PORT"`: the socket after the token line. */
  private async dial(df: ParsedDockerfile, parsed: ParsedArgv, fail: (stderr: string) => never): Promise<Socket> {
    const port = Number(parsed.buildArgs.BMC_PORT)
    const token = parsed.buildArgs.BMC_TOKEN
    if (!Number.isInteger(port) || token === undefined) return fail('nc: bad port')
    // 127.0.0.1 of a build container is not the runner's: only host networking reaches the action.
    if (df.host === '127.0.0.1' && parsed.network !== 'host') return fail(`nc: can't connect to remote host (127.0.0.1): Connection refused`)
    const socket = await new Promise<Socket>((resolve, reject) => {
      const s = connect({ host: df.host ?? '127.0.0.1', port, allowHalfOpen: true }, () => resolve(s))
      s.once('error', reject)
    }).catch(() => fail(`nc: can't connect to remote host (${df.host}): Connection refused`))
    socket.write(`${token}\n`)
    if (df.kind === 'inject') socket.end()
    return socket
  }

  /** `tar -x -C /bmc` of the inject stream, then the fix-up list. */
  private unpack(df: ParsedDockerfile, entries: ReadEntry[], fail: (stderr: string) => never): void {
    const byDir = new Map([...df.mounts].map(([index, m]) => [`c${index}`, m.id]))
    let fixups: string | undefined
    const touched = new Set<string>()
    const begun = new Set<string>()
    const done = new Set<string>()
    for (const { header, body } of entries) {
      const name = header.name.replace(/^\.\//, '').replace(/\/$/, '')
      if (name === 'fixups') {
        fixups = body.toString()
        continue
      }
      const marker = /^(at|ok)\.(\d+)$/.exec(name)
      if (marker) {
        ;(marker[1] === 'at' ? begun : done).add(`c${marker[2]}`)
        continue
      }
      const slash = name.indexOf('/')
      const top = slash < 0 ? name : name.slice(0, slash)
      const id = byDir.get(top)
      if (id === undefined) return fail(`tar: ${name}: not under a mounted cache`)
      const path = slash < 0 ? '' : name.slice(slash + 1)
      if (path.split('/').includes('..')) return fail(`tar: ${name}: path with ..`)
      const cache = this.cache(id)
      const type = header.type as FakeEntry['type']
      if (!['file', 'directory', 'symlink', 'link'].includes(type)) return fail(`tar: ${name}: unsupported type ${header.type}`)
      const entry: FakeEntry = { type, mode: header.mode & 0o7777, uid: header.uid, gid: header.gid, mtime: header.mtime, body }
      if (type === 'link') {
        const target = (header.linkname ?? '').replace(/\/$/, '')
        if (!target.startsWith(`${top}/`)) return fail(`tar: ${name}: hardlink outside its mount`)
        entry.linkname = target.slice(top.length + 1)
        const linked = cache.entries.get(entry.linkname)
        if (!linked) return fail(`tar: ${name}: hardlink to a missing file`)
        entry.body = linked.body
      } else if (type === 'symlink') {
        entry.linkname = header.linkname ?? ''
      }
      cache.entries.set(path, entry)
      touched.add(id)
    }
    // A mount the stream began and did not complete is emptied again (rm -rf of its contents).
    for (const dir of begun) {
      const id = byDir.get(dir)
      if (id !== undefined && !done.has(dir)) {
        const { entries } = this.cache(id)
        for (const path of [...entries.keys()]) if (path !== '') entries.delete(path)
      }
    }
    if (fixups === undefined) return fail('#7 ERROR: process "/bin/sh -c ... test -f /bmc/fixups" did not complete successfully: exit code: 1')
    this.applyFixups(fixups, byDir, fail)
    for (const id of touched) this.cache(id).generation++
  }

  private applyFixups(text: string, byDir: Map<string, string>, fail: (stderr: string) => never): void {
    const lines = text.split('\n')
    if (lines.at(-1) === '') lines.pop()
    for (let i = 0; i < lines.length;) {
      const head = /^([ED]) (\d+) (\d+) (\d+) (\d+)$/.exec(lines[i] ?? '')
      if (!head) return fail(`fixups: bad line ${JSON.stringify(lines[i])}`)
      const [, kind, uid, gid, t, n] = head
      const paths = lines.slice(i + 1, i + 1 + Number(n))
      if (paths.length !== Number(n)) return fail('fixups: group cut short')
      for (const p of paths) {
        const m = /^\/bmc\/(c\d+)(?:\/(.*))?$/.exec(p)
        const id = m ? byDir.get(m[1] as string) : undefined
        const e = id !== undefined ? this.caches.get(id)?.entries.get(m?.[2] ?? '') : undefined
        if (!e) return fail(`chown: ${p}: No such file or directory`)
        if (kind === 'E') {
          e.uid = Number(uid)
          e.gid = Number(gid)
        }
        e.mtime = new Date(Number(t) * 1000)
      }
      i += 1 + Number(n)
    }
  }

  /** `tar -c -C /bmc status $d`: the status file, then every changed mount's tree (parents first). */
  private async extractStream(df: ParsedDockerfile, parsed: ParsedArgv): Promise<Buffer> {
    const status: string[] = []
    const trees: RawEntry[] = []
    for (const [index, m] of df.mounts) {
      if (index === this.faults.extractOmits) continue
      const given = parsed.buildArgs[`BMC_MANIFEST_${index}`]
      if (given !== undefined && given !== '' && given === this.manifest(m.id)) {
        status.push(`c${index}`)
        continue
      }
      const cache = this.cache(m.id)
      for (const [path, e] of [...cache.entries].sort(([a], [b]) => (a < b ? -1 : 1))) {
        const name = path === '' ? `c${index}/` : `c${index}/${path}${e.type === 'directory' ? '/' : ''}`
        const header: RawEntry = { name, type: e.type, mode: e.mode, uid: e.uid, gid: e.gid, mtime: e.mtime, uname: 'root', gname: 'root' }
        // As busybox tar -c: ids the ustar field cannot hold go into pax records.
        if (e.uid > 0o777777 || e.gid > 0o777777) header.pax = { uid: String(e.uid), gid: String(e.gid) }
        if (e.type === 'file') header.body = e.body
        if (e.type === 'symlink') header.linkname = e.linkname ?? ''
        if (e.type === 'link') header.linkname = `c${index}/${e.linkname ?? ''}`
        trees.push(header)
      }
    }
    return makeTar([{ name: 'status', body: status.map(s => `${s}\n`).join('') }, ...trees])
  }
}

function parseArgv(args: readonly string[]): ParsedArgv {
  const out: ParsedArgv = { network: 'default', buildArgs: {}, context: '', allow: [] }
  for (let i = 0; i < args.length; i++) {
    const a = args[i] as string
    if (a === '--build-arg') {
      const kv = args[++i] ?? ''
      const eq = kv.indexOf('=')
      out.buildArgs[kv.slice(0, eq)] = kv.slice(eq + 1)
    } else if (a.startsWith('--network=')) out.network = a.slice('--network='.length)
    else if (a === '--allow') out.allow.push(args[++i] ?? '')
    else if (a === '--builder' || a === '--output') i++
    else if (!a.startsWith('--')) out.context = a
  }
  return out
}

function parseDockerfile(text: string): ParsedDockerfile {
  const stage = /^FROM \S+ AS (inject|extract)$/m.exec(text)?.[1] as 'inject' | 'extract' | undefined
  if (!stage) throw new Error(`fake builder: not a generated Dockerfile:\n${text}`)
  const mounts: ParsedDockerfile['mounts'] = new Map()
  for (const m of text.matchAll(/--mount=type=cache,id=([^,\s]+),target=\/bmc\/c(\d+)((?:,[^\s]+)?)/g)) {
    const opts = new Map(
      (m[3] ?? '')
        .split(',')
        .filter(Boolean)
        .map(o => o.split('=') as [string, string])
    )
    const mount = { id: m[1] as string, readonly: opts.has('readonly') } as {
      id: string
      uid?: number
      gid?: number
      mode?: number
      readonly: boolean
    }
    if (opts.has('uid')) mount.uid = Number(opts.get('uid'))
    if (opts.has('gid')) mount.gid = Number(opts.get('gid'))
    if (opts.has('mode')) mount.mode = parseInt(opts.get('mode') as string, 8)
    mounts.set(Number(m[2]), mount)
  }
  const nc = /\| nc (\S+) "\$BMC_PORT"/.exec(text)
  if (stage === 'inject') {
    if (text.includes('tar -x -f /bmc/in/mounts.tar')) return { kind: stage, via: 'context', mounts }
    if (nc) return { kind: stage, via: 'stream', host: nc[1] as string, mounts }
  } else {
    if (nc) return { kind: stage, via: 'stream', host: nc[1] as string, mounts }
    if (text.includes('> /bmc/out/mounts.tar')) return { kind: stage, via: 'export', mounts }
  }
  throw new Error(`fake builder: cannot tell how the ${stage} build moves its data:\n${text}`)
}
