import { formatMode, type MountSpec } from './mounts.js'

/**
 * Generated Dockerfiles for the inject and extract builds. Every user value
 * that reaches the text (id, uid, gid, mode, sharing, image) has been
 * validated by its parser; the checks here repeat the character rules so no
 * caller can hand over an unvalidated value by mistake.
 */

/** Where mount number `index` is attached inside the generated builds. */
export const cachePath = (index: number): string => `/bmc/c${index}`
/** Context directory holding the restored files of mount number `index`. */
export const contextDir = (index: number): string => `m${index}`
/** Top-level directory of mount number `index` in the extract stream (`tar -c -C /bmc c0 c1 ...`). */
export const exportDir = (index: number): string => `c${index}`
/** The one file the exporter variant of extract produces. */
export const EXPORT_FILE = 'mounts.tar'
/** Build arguments of the loopback variant of extract. */
export const PORT_ARG = 'BMC_PORT'
export const TOKEN_ARG = 'BMC_TOKEN'
/** Build argument that makes every generated build unique. */
export const NONCE_ARG = 'BMC_NONCE'

const SAFE_ID = /^[A-Za-z0-9_./][A-Za-z0-9_.:@+/-]*$/
const SAFE_IMAGE = /^[a-z0-9][a-z0-9._/:@-]*$/

export interface IndexedMount {
  /** Position in the step's mount list; names the generated paths. */
  index: number
  spec: MountSpec
}

/** The `--mount=type=cache,...` flag selecting the same cache as the user's build. */
export function cacheMountFlag(mount: IndexedMount, extra: string[] = []): string {
  const { spec, index } = mount
  if (!SAFE_ID.test(spec.id)) throw new Error(`unsafe cache id reached the Dockerfile generator: ${JSON.stringify(spec.id)}`)
  const opts = [`type=cache`, `id=${spec.id}`, `target=${cachePath(index)}`]
  if (spec.uid !== undefined) opts.push(`uid=${integer(spec.uid)}`)
  if (spec.gid !== undefined) opts.push(`gid=${integer(spec.gid)}`)
  if (spec.mode !== undefined) opts.push(`mode=${formatMode(integer(spec.mode) & 0o7777)}`)
  // The generated builds run alone, but a user build may share the builder
  // (self-hosted runners): take the lock rather than race it.
  opts.push('sharing=locked', ...extra)
  return `--mount=${opts.join(',')}`
}

function integer(n: number): number {
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`not a non-negative integer: ${n}`)
  return n
}

function fromLine(image: string, stage: string): string {
  if (!SAFE_IMAGE.test(image)) throw new Error(`unsafe image reference reached the Dockerfile generator: ${JSON.stringify(image)}`)
  return `FROM ${image} AS ${stage}`
}

/**
 * `cp -a` (busybox and GNU alike) gives copied symlinks the current time;
 * this loop sets each symlink under `dst` to the mtime of its twin under
 * `src`. Constant text: the paths are generated ones, names come from `find`.
 */
export function keepSymlinkTimes(src: string, dst: string): string {
  return `(cd ${src} && find . -type l) | while IFS= read -r p; do touch -h -d "@$(stat -c %Y "${src}/$p")" "${dst}/$p"; done`
}

function runLines(flags: string[], commands: string[]): string[] {
  return ['RUN \\', ...flags.map(f => `    ${f} \\`), `    ${commands.join(' \\\n    && ')}`]
}

/**
 * Inject: copies each restored mount's files (a directory of the tar build
 * context, bind-mounted) into its cache mount, keeping owners, modes, times
 * and links (`cp -a`). The final stage depends on the RUN through a marker
 * file, so BuildKit cannot skip it; the nonce argument defeats layer caching.
 */
export function injectDockerfile(image: string, mounts: IndexedMount[]): string {
  if (mounts.length === 0) throw new Error('inject needs at least one mount')
  const flags = mounts.flatMap(m => [cacheMountFlag(m), `--mount=type=bind,source=${contextDir(m.index)},target=/bmc/d${m.index}`])
  const commands = [
    ...mounts.flatMap(m => [`cp -a /bmc/d${m.index}/. ${cachePath(m.index)}/`, keepSymlinkTimes(`/bmc/d${m.index}`, cachePath(m.index))]),
    `mkdir -p /bmc/out`,
    `echo "$${NONCE_ARG}" > /bmc/out/injected`
  ]
  return [fromLine(image, 'inject'), `ARG ${NONCE_ARG}`, ...runLines(flags, commands), 'FROM scratch', 'COPY --from=inject /bmc/out /', ''].join('\n')
}

/**
 * How extract hands the mounts over. `loopback`: the RUN streams `tar -c`
 * of the mounts to the action's one-shot listener on 127.0.0.1 (the build
 * needs host networking), nothing is written in the builder. `export`: the
 * RUN writes the same tar into one file that the build exports as its
 * result. Either way busybox `tar -c` reads the mounts directly, keeping
 * owners, modes, mtimes (symlinks too), hardlinks and long names, and the
 * mounts are read-only so extracting can never change a cache.
 */
export type ExtractMode = 'loopback' | 'export'

export function extractDockerfile(image: string, mounts: IndexedMount[], mode: ExtractMode): string {
  if (mounts.length === 0) throw new Error('extract needs at least one mount')
  const flags = mounts.map(m => cacheMountFlag(m, ['readonly']))
  const dirs = mounts.map(m => exportDir(m.index)).join(' ')
  const commands =
    mode === 'loopback'
      ? [
          'set -o pipefail',
          `{ echo "$${TOKEN_ARG}"; tar -c -C /bmc ${dirs}; } | nc 127.0.0.1 "$${PORT_ARG}"`,
          'mkdir -p /bmc/out',
          'echo streamed > /bmc/out/extracted'
        ]
      : ['mkdir -p /bmc/out', `tar -c -C /bmc ${dirs} > /bmc/out/${EXPORT_FILE}`]
  const args = mode === 'loopback' ? [`ARG ${PORT_ARG}`, `ARG ${TOKEN_ARG}`] : []
  return [
    fromLine(image, 'extract'),
    `ARG ${NONCE_ARG}`,
    ...args,
    ...runLines(flags, commands),
    'FROM scratch',
    'COPY --from=extract /bmc/out /',
    ''
  ].join('\n')
}
