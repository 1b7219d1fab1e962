import { formatMode, type MountSpec } from '../mounts/spec.js'

/**
 * Generated Dockerfiles for the inject and extract builds. Every user value
 * that reaches the text (id, uid, gid, mode, sharing, image) has been
 * validated by its parser; the checks here repeat the character rules so no
 * caller can hand over an unvalidated value by mistake.
 */

/** Where mount number `index` is attached inside the generated builds. */
export const cachePath = (index: number): string => `/bmc/c${index}`
/** Top-level directory of mount number `index` in the extract stream (`tar -c -C /bmc c0 c1 ...`). */
export const exportDir = (index: number): string => `c${index}`
/** The one file the exporter variant of extract produces. */
export const EXPORT_FILE = 'mounts.tar'
/** Build arguments of the stream variants of inject and extract. */
export const PORT_ARG = 'BMC_PORT'
export const TOKEN_ARG = 'BMC_TOKEN'
/** Build argument that makes every generated build unique. */
export const NONCE_ARG = 'BMC_NONCE'
/** The fix-up list that ends the inject stream (see inject-stream.ts), unpacked to /bmc/. */
export const FIXUPS_FILE = 'fixups'
/**
 * The markers around a mount's entries in the inject stream (`at.<n>`, then
 * `ok.<n>` once all of them arrived and passed): the build empties a mount
 * it has the first marker of and not the second.
 */
export const START_MARKER = 'at.'
export const DONE_MARKER = 'ok.'
/** Inject's result: one `<index> <manifest>` line per mount. */
export const MANIFEST_FILE = 'manifests'
/** First entry of the extract stream: the mount directories the build found unchanged, one a line. */
export const STATUS_FILE = 'status'
/** Build argument carrying mount `index`'s manifest from inject to extract. */
export const manifestArg = (index: number): string => `BMC_MANIFEST_${integer(index)}`
/**
 * Build argument asking extract for mount `index`'s delta: the most bytes of
 * changed file content it may hold (more, and the mount is sent whole).
 */
export const deltaArg = (index: number): string => `BMC_DELTA_${integer(index)}`
/** Inject's listing of mount `index` (see LIST_FUNCTION), in its result and then in extract's context. */
export const listingFile = (index: number): string => `listing.${integer(index)}`
/** Top-level file of the extract stream naming what a delta of mount directory `dir` removed, one path a line. */
export const deltaFile = (dir: string): string => `delta.${dir}`
/** Where extract's build context (its Dockerfile and the listings) is mounted. */
const CONTEXT_DIR = '/bmc/in'
/**
 * What one busybox `tar -c` may be handed as names (xargs -s: below Linux's
 * 2 MiB for arguments and environment together), and what a delta's names
 * may take of it: one invocation, so hardlinks within a delta stay links.
 */
const XARGS_BYTES = 1_900_000
const DELTA_NAME_BYTES = 1_800_000

/** What `manifestOf` prints: an md5 in hex. */
export const MANIFEST = /^[0-9a-f]{32}$/

/**
 * Shell functions over a mount's listing: one line per entry with its size,
 * type and mode, owner, link count, inode, mtime and ctime (to the
 * nanosecond), then its name (`c<n>/...`). Nothing can change a file
 * without changing its ctime (it cannot be set), so a mount whose listing is
 * the one inject left behind still holds exactly what was injected, and
 * extract can skip it without reading a byte of content; where it differs,
 * the lines that differ are what changed. `manifest` is the listing's md5.
 * `plain` is true when no name in listing `$2` of `$1` holds a newline: as
 * many entries as the listing has lines (one `find`, no `stat`).
 * Constant text; `$1` is a generated `c<n>`, `$2` a file.
 */
const LIST_FUNCTIONS = [
  `list() { (cd /bmc && find "$1" -exec stat -c '%s|%f|%u|%g|%h|%i|%y|%z|%n' {} +); }`,
  `manifest() { md5sum < "$1" | cut -c1-32; }`,
  `plain() { [ "$(cd /bmc && find "$1" -print0 | tr -d -c '\\000' | wc -c)" = "$(wc -l < "$2")" ]; }`
]

/**
 * The comparison of two listings (awk, constant text): the names of new and
 * changed entries go to file `ch` (with their `c<n>/` prefix, for tar), the
 * names the old listing has and the new has not to file `dl` (relative to
 * the mount). Exits 1, for a whole-mount extract, when the changed regular
 * files hold more than `lim` bytes or the names more than `nb`.
 */
const DIFF_AWK = [
  'function name(l, i) { for (i = 0; i < 8; i++) l = substr(l, index(l, "|") + 1); return l }',
  'NR == FNR { old[name($0)] = $0; next }',
  '{ k = name($0); if (!(k in old) || old[k] != $0) { print k > ch; n += length(k) + 1; split($0, f, "|"); if (f[2] ~ /^8/ && length(f[2]) == 4) b += f[1] } delete old[k] }',
  'END { for (k in old) { sub(/^[^\\/]*\\/?/, "", k); if (k != "") print k > dl } close(ch); close(dl); exit (b > lim || n > nb) ? 1 : 0 }'
].join(' ')

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

function runLines(flags: string[], commands: string[]): string[] {
  return ['RUN \\', ...flags.map(f => `    ${f} \\`), `    ${commands.join(' \\\n    && ')}`]
}

/**
 * How inject receives the restored mounts: one tar stream (see
 * inject-stream.ts) that the RUN unpacks straight into the mounts with
 * busybox `tar -x`, then applies its fix-up list. A stream: the RUN reads
 * it from the action's one-shot listener at `host` (127.0.0.1 with host
 * networking, or a builder network's gateway), as the action produces it. `context`: the stream is a file
 * (STREAM_FILE) of a directory build context, bind-mounted: no host
 * networking, one file for BuildKit to transfer, nothing copied twice.
 */
export type InjectMode = 'context' | StreamVia

/** Where the generated RUN connects to the action's listener: an IPv4 address of the runner. */
export interface StreamVia {
  host: string
}

const IPV4 = /^(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}$/

/** The host of a stream, checked again: it is written into the RUN. */
function streamHost(via: StreamVia): string {
  if (!IPV4.test(via.host)) throw new Error(`unsafe stream address reached the Dockerfile generator: ${JSON.stringify(via.host)}`)
  return via.host
}

/** The inject stream as a file of the directory build context (inject mode `context`). */
export const STREAM_FILE = 'mounts.tar'

/**
 * Inject: fills each mount, keeping owners, modes, times and links, and
 * writes each mount's manifest into the result (MANIFEST_FILE). The final
 * stage depends on the RUN through that file, so BuildKit cannot skip it;
 * the nonce argument defeats layer caching.
 */
export function injectDockerfile(image: string, mounts: IndexedMount[], mode: InjectMode = 'context'): string {
  if (mounts.length === 0) throw new Error('inject needs at least one mount')
  const flags = mounts.map(m => cacheMountFlag(m))
  if (mode === 'context') flags.push(`--mount=type=bind,source=${STREAM_FILE},target=/bmc/in/${STREAM_FILE}`)
  const unpack =
    mode === 'context' ? `tar -x -f /bmc/in/${STREAM_FILE} -C /bmc` : `echo "$${TOKEN_ARG}" | nc ${streamHost(mode)} "$${PORT_ARG}" | tar -x -C /bmc`
  const dirs = mounts.map(m => exportDir(m.index)).join(' ')
  const indexes = mounts.map(m => integer(m.index)).join(' ')
  // Each mount's listing and manifest. The listing stays in the result only for a mount that
  // was empty before (on a builder kept from an earlier job it may not be) and whose names
  // have no newline: a delta against it then holds every change since the restored entry.
  const listings = mounts.map(m => {
    const dir = exportDir(m.index)
    const file = `/bmc/out/${listingFile(m.index)}`
    return `list ${dir} > ${file} && echo "${m.index} $(manifest ${file})" >> /bmc/out/${MANIFEST_FILE} && { case " $e " in *" ${dir} "*) plain ${dir} ${file} ;; *) false ;; esac || rm ${file}; }`
  })
  const commands = [
    'set -o pipefail',
    ...LIST_FUNCTIONS,
    `e= && for c in ${dirs}; do [ -n "$(ls -A /bmc/$c)" ] || e="$e $c"; done`,
    // A mount the stream began and did not complete (an entry refused or cut short on its way, or the
    // stream itself cut) is emptied again, never left half-written; mounts it never began are untouched.
    `{ ${unpack} || :; }`,
    `for c in ${indexes}; do [ ! -f /bmc/${START_MARKER}$c ] || [ -f /bmc/${DONE_MARKER}$c ] || rm -rf /bmc/c$c/* /bmc/c$c/.[!.]* /bmc/c$c/..?*; done`,
    // The list is the stream's last entry: without it the stream was cut short.
    `test -f /bmc/${FIXUPS_FILE}`,
    // Groups of paths sharing an owner and a time (see inject-stream.ts): two processes a group, not an entry.
    `while read -r k u g t n; do set --; while [ $# -lt "$n" ] && IFS= read -r p; do set -- "$@" "$p"; done; [ $# -eq "$n" ] && { [ "$k" = D ] || chown -h "$u:$g" "$@"; } && touch -h -d "@$t" "$@" || exit 1; done < /bmc/${FIXUPS_FILE}`,
    `mkdir -p /bmc/out && : > /bmc/out/${MANIFEST_FILE}`,
    ...listings,
    `echo "$${NONCE_ARG}" > /bmc/out/injected`
  ]
  return generated(image, 'inject', mode !== 'context' ? STREAM_ARGS : [], flags, commands)
}

/** The stream variants' build arguments: where the listener is and its token. */
const STREAM_ARGS = [`ARG ${PORT_ARG}`, `ARG ${TOKEN_ARG}`]

/**
 * A generated Dockerfile: one RUN in the utility image with the nonce and
 * `args`, then a scratch stage holding only what the RUN put in /bmc/out
 * (the build's result, which also keeps BuildKit from skipping the RUN).
 */
function generated(image: string, stage: string, args: string[], flags: string[], commands: string[]): string {
  return [
    fromLine(image, stage),
    `ARG ${NONCE_ARG}`,
    ...args,
    ...runLines(flags, commands),
    'FROM scratch',
    `COPY --from=${stage} /bmc/out /`,
    ''
  ].join('\n')
}

/**
 * How extract hands the mounts over. A stream: the RUN sends `tar -c` of
 * the mounts to the action's one-shot listener at `host`, nothing is
 * written in the builder. `export`: the RUN writes the same tar into one
 * file that the build exports as its result. Either way busybox `tar -c` reads the mounts directly, keeping
 * owners, modes, mtimes (symlinks too), hardlinks and long names, and the
 * mounts are read-only so extracting can never change a cache.
 */
export type ExtractMode = StreamVia | 'export'

export function extractDockerfile(image: string, mounts: IndexedMount[], mode: ExtractMode): string {
  if (mounts.length === 0) throw new Error('extract needs at least one mount')
  const flags = [...mounts.map(m => cacheMountFlag(m, ['readonly'])), `--mount=type=bind,target=${CONTEXT_DIR}`]
  // Names of all deltas go to one tar: each mount's share of what one invocation takes.
  const nameBytes = Math.floor(DELTA_NAME_BYTES / mounts.length)
  // A mount whose manifest is still the one inject left is listed in the status file and not archived;
  // one asked for a delta whose changes are small enough is sent as one; any other is sent whole.
  const select = mounts.map(m => {
    const { index } = m
    const dir = exportDir(index)
    const now = `/bmc/now.${index}`
    const listing = `${CONTEXT_DIR}/${listingFile(index)}`
    const changed = `/bmc/changed.${index}`
    const awk = `awk -v ch=${changed} -v dl=/bmc/${deltaFile(dir)} -v lim="$${deltaArg(index)}" -v nb=${nameBytes} '${DIFF_AWK}' ${listing} ${now}`
    return [
      `if [ -n "$${manifestArg(index)}" ] && [ "$(manifest ${now})" = "$${manifestArg(index)}" ]; then echo ${dir} >> /bmc/${STATUS_FILE}`,
      `elif [ -n "$ok" ] && [ -n "$${deltaArg(index)}" ] && [ -f ${listing} ] && plain ${dir} ${now} && : > /bmc/${deltaFile(dir)} && ${awk}; then cat ${changed} >> /bmc/names; x="$x ${deltaFile(dir)}"`,
      `else d="$d ${dir}"; fi`
    ].join('; ')
  })
  // Whole mounts and the deltas' removal lists, then (a second archive on the same stream) the deltas' entries.
  const archive = `{ tar -c -C /bmc ${STATUS_FILE} $x $d && if [ -s /bmc/names ]; then cd /bmc && tr '\\n' '\\000' < names | xargs -0 -s ${XARGS_BYTES} tar -c --no-recursion; fi; }`
  const commands = [
    'set -o pipefail',
    ...LIST_FUNCTIONS,
    `d= && x= && : > /bmc/${STATUS_FILE} && : > /bmc/names`,
    // Every mount listed at once (metadata reads: the mounts' listings overlap well), then compared one by one.
    `{ for c in ${mounts.map(m => m.index).join(' ')}; do list c$c > /bmc/now.$c & done; wait; }`,
    // An image whose tar or xargs cannot make a delta sends every mount whole.
    `if tar -c --no-recursion -C /bmc ${STATUS_FILE} > /dev/null 2>&1 && echo | xargs -0 -s ${XARGS_BYTES} true 2> /dev/null; then ok=1; else ok=; fi`,
    ...select,
    ...(mode !== 'export'
      ? [`{ echo "$${TOKEN_ARG}"; ${archive}; } | nc ${streamHost(mode)} "$${PORT_ARG}"`, 'mkdir -p /bmc/out', 'echo streamed > /bmc/out/extracted']
      : ['mkdir -p /bmc/out', `${archive} > /bmc/out/${EXPORT_FILE}`])
  ]
  const args = [...(mode !== 'export' ? STREAM_ARGS : []), ...mounts.flatMap(m => [`ARG ${manifestArg(m.index)}`, `ARG ${deltaArg(m.index)}`])]
  return generated(image, 'extract', args, flags, commands)
}
