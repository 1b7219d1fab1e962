// The synthetic cache: three cache mounts filled INSIDE the builder by a
// generated user build, so the data really lives in BuildKit cache mounts.
//
//   pkgs   uid=1000,gid=1000 (a package cache: many small files, owned 1000:1000)
//   tools  default owner (a toolchain: four large files and a few small ones)
//   build  sharing=locked (mixed: two large files, many small ones, owners
//          1000 / 65534 / 0, modes 600/700/755, hardlinks, relative,
//          absolute, directory and dangling symlinks, a path over 100 chars)
//
// Bytes: 60 % in six large files (random binary), 40 % in small files (random
// base64 text, which compresses to about 3/4; half of them tiny, a quarter of
// the average size, the other half sized to make up the rest), 100 files per
// directory. `--files` counts distinct regular files; the
// hardlinks and symlinks of `build` come on top.

export interface BenchMount {
  /** Short name, also the directory of the host tree. */
  name: 'pkgs' | 'tools' | 'build'
  id: string
  target: string
  uid?: number
  gid?: number
  sharing?: 'locked'
}

export function benchMounts(run: string): BenchMount[] {
  // The run id is in every id and target: BuildKit's record descriptions then
  // name it, which is how the bench finds (and prunes) only its own records.
  return [
    { name: 'pkgs', id: `bench-${run}-pkgs`, target: `/bench-${run}/pkgs`, uid: 1000, gid: 1000 },
    { name: 'tools', id: `bench-${run}-tools`, target: `/bench-${run}/tools` },
    { name: 'build', id: `bench-${run}-build`, target: `/bench-${run}/build`, sharing: 'locked' }
  ]
}

/** The cache-mount options as key=value pairs (the order of a Dockerfile flag). */
export function mountOptions(m: BenchMount, target = m.target, id = m.id): Array<[string, string]> {
  const opts: Array<[string, string]> = [
    ['id', id],
    ['target', target]
  ]
  if (m.uid !== undefined) opts.push(['uid', String(m.uid)])
  if (m.gid !== undefined) opts.push(['gid', String(m.gid)])
  if (m.sharing) opts.push(['sharing', m.sharing])
  return opts
}

/** `--mount=type=cache,...` for a generated Dockerfile. */
export function cacheFlag(m: BenchMount, options: { target?: string; id?: string; extra?: string[] } = {}): string {
  const opts = mountOptions(m, options.target, options.id).map(([k, v]) => `${k}=${v}`)
  return `--mount=type=cache,${[...opts, ...(options.extra ?? [])].join(',')}`
}

/** The action's `mounts` input for these mounts. */
export function actionMountsInput(mounts: BenchMount[]): string {
  return mounts
    .map(m =>
      mountOptions(m)
        .map(([k, v]) => `${k}=${v}`)
        .join(',')
    )
    .join('\n')
}

interface DirPlan {
  tiny: number
  other: number
}

export interface MountPlan {
  large: number[]
  tinySize: number
  otherSize: number
  dirs: DirPlan[]
}

export interface DatasetPlan {
  mounts: Record<BenchMount['name'], MountPlan>
  /** Regular files (distinct inodes) in all mounts. */
  files: number
  hardlinks: number
  symlinks: number
  /** File content bytes per mount (hardlinked content counted once), exactly. */
  bytes: Record<BenchMount['name'], number>
  totalBytes: number
}

const FILES_PER_DIR = 100

function smallFiles(count: number, bytes: number): Omit<MountPlan, 'large'> {
  const n = Math.max(2, count)
  const average = bytes / n
  const tinyCount = Math.floor(n / 2)
  const otherCount = n - tinyCount
  const tinySize = Math.max(1, Math.floor(average / 4))
  const otherSize = Math.max(1, Math.floor((bytes - tinyCount * tinySize) / otherCount))
  const dirCount = Math.ceil(n / FILES_PER_DIR)
  const dirs: DirPlan[] = []
  for (let d = 0; d < dirCount; d++) {
    dirs.push({
      tiny: Math.floor(tinyCount / dirCount) + (d < tinyCount % dirCount ? 1 : 0),
      other: Math.floor(otherCount / dirCount) + (d < otherCount % dirCount ? 1 : 0)
    })
  }
  return { tinySize, otherSize, dirs }
}

export function planDataset(totalBytes: number, files: number): DatasetPlan {
  if (files < 100) throw new Error('--files must be at least 100')
  const large = (share: number, count: number): number[] => Array.from({ length: count }, () => Math.floor((totalBytes * share) / count))
  const pkgsFiles = Math.round(files * 0.5)
  const toolsFiles = Math.round(files * 0.1) - 4
  const buildFiles = files - pkgsFiles - toolsFiles - 4 - 2
  const mounts: DatasetPlan['mounts'] = {
    pkgs: { large: [], ...smallFiles(pkgsFiles, totalBytes * 0.25) },
    tools: { large: large(0.5, 4), ...smallFiles(toolsFiles, totalBytes * 0.05) },
    build: { large: large(0.1, 2), ...smallFiles(buildFiles, totalBytes * 0.1) }
  }
  const bytesOf = (p: MountPlan): number =>
    p.large.reduce((a, b) => a + b, 0) + p.dirs.reduce((sum, d) => sum + d.tiny * p.tinySize + d.other * p.otherSize, 0)
  const links = Math.max(10, Math.round(files / 100))
  const bytes = { pkgs: bytesOf(mounts.pkgs), tools: bytesOf(mounts.tools), build: bytesOf(mounts.build) + LONG_FILE_BYTES }
  const count = (p: MountPlan): number => p.large.length + p.dirs.reduce((s, d) => s + d.tiny + d.other, 0)
  return {
    mounts,
    files: count(mounts.pkgs) + count(mounts.tools) + count(mounts.build) + 1,
    hardlinks: links,
    symlinks: links + 4,
    bytes,
    totalBytes: bytes.pkgs + bytes.tools + bytes.build
  }
}

const LONG_FILE_BYTES = 4096

/** Name of the `n`th (from 1) file of a directory of small files: `t` (tiny) or `o` (other), as the generator's `w` names them. */
const smallFileName = (dir: number, kind: 't' | 'o', n: number): string => `d${String(dir).padStart(4, '0')}/${kind}${String(n).padStart(3, '0')}`

/** The small files of one mount as the generator makes them: path relative to the mount root, size. */
export function generatedSmallFiles(p: MountPlan): Array<{ path: string; size: number }> {
  const files: Array<{ path: string; size: number }> = []
  p.dirs.forEach((d, i) => {
    for (let n = 1; n <= d.tiny; n++) files.push({ path: smallFileName(i, 't', n), size: p.tinySize })
    for (let n = 1; n <= d.other; n++) files.push({ path: smallFileName(i, 'o', n), size: p.otherSize })
  })
  return files
}

/** Shell lines (busybox) that fill one mount per its plan. */
function fillLines(root: string, p: MountPlan): string[] {
  const lines = p.large.map((size, i) => `head -c ${size} /dev/urandom > ${root}/large-${i}.bin`)
  p.dirs.forEach((d, i) => lines.push(`g ${root}/d${String(i).padStart(4, '0')} ${d.tiny} ${p.tinySize} ${d.other} ${p.otherSize}`))
  return lines
}

/**
 * Dockerfile of the user build that creates the data in the three cache
 * mounts and prints a signature of each (see signatureFunction).
 */
export function generatorDockerfile(image: string, mounts: BenchMount[], plan: DatasetPlan, nonce: string, signature: SignatureOptions = {}): string {
  const [pkgs, tools, build] = mounts.map(m => m.target) as [string, string, string]
  const links = plan.hardlinks
  const long = `${build}/deep/${'a'.repeat(60)}/${'b'.repeat(60)}/${'c'.repeat(40)}.dat`
  const script = [
    'set -eu',
    `echo ${nonce} > /dev/null`,
    // A few processes per directory, not one per file (busybox has no split):
    // `w PREFIX COUNT SIZE` writes COUNT files of SIZE random base64 characters.
    `w() { [ "$2" -gt 0 ] || return 0; head -c $(( ($2*$3*3+3)/4 + 3 )) /dev/urandom | base64 -w $3 | awk -v p="$1" -v k=$2 'NR <= k { f = sprintf("%s%03d", p, NR); printf "%s", $0 > f; close(f) }'; }`,
    'g() { mkdir -p "$1"; w "$1/t" $2 $3; w "$1/o" $4 $5; }',
    ...fillLines(pkgs, plan.mounts.pkgs),
    ...fillLines(tools, plan.mounts.tools),
    ...fillLines(build, plan.mounts.build),
    `chown -R 1000:1000 ${pkgs}`,
    `mkdir -p ${build}/links ${build}/deep/${'a'.repeat(60)}/${'b'.repeat(60)}`,
    `head -c ${LONG_FILE_BYTES} /dev/urandom > ${long}`,
    // hardlinks and relative symlinks to the first files of the tree
    `i=0; for f in $(find ${build}/d0000 ${build}/d0001 -type f | sort | head -n ${links}); do ln "$f" ${build}/links/h$i; ln -s "..\${f#${build}}" ${build}/links/s$i; i=$((i+1)); done`,
    `ln -s d0002 ${build}/dirlink`,
    `ln -s does-not-exist ${build}/links/dangling`,
    `ln -s /etc/passwd ${build}/links/absolute`,
    `ln -s deep/${'a'.repeat(60)}/${'b'.repeat(60)}/${'c'.repeat(40)}.dat ${build}/links/long`,
    `chown -R 65534:65534 ${build}/d0001`,
    `chown -R 1000:100 ${build}/d0002`,
    `chmod 600 ${build}/d0000/*`,
    `chmod 700 ${build}/d0001`,
    `chmod 755 ${build}/large-*.bin`,
    signatureFunction(signature),
    ...mounts.map(m => `echo "SIG ${m.name} $(sig ${m.target})"`)
  ]
  return [`FROM ${image}`, `RUN ${mounts.map(m => cacheFlag(m)).join(' \\\n    ')} <<'EOS'`, ...script, 'EOS', ''].join('\n')
}

/** What a signature covers beyond the metadata. */
export interface SignatureOptions {
  /**
   * Also a digest of every file's content and of the hardlink groups (which
   * names share an inode). It reads the whole tree, so only the callers that
   * change content (the delta scenario) ask for it.
   */
  content?: boolean
}

/**
 * `sig DIR` (busybox sh) prints `<entries> <meta> <file mtimes> <dir mtimes>
 * <buildstamp>`: the entry count, a digest of every non-root entry's name,
 * type, size, owner, mode, link count (symlinks: target), digests of the
 * mtimes of files and of directories, and 1 when the root holds a
 * `buildstamp` (the per-mount tool copies its own into the cache). The
 * buildstamp is left out of the rest. Equal trees print equal lines; the
 * split tells which kind of metadata a copy lost. With `content`, a sixth
 * field: the digest of the files' md5s and of the hardlink groups.
 */
export function signatureFunction(options: SignatureOptions = {}): string {
  const x = '! -path . ! -path ./buildstamp'
  // Hardlink groups: `inode name` lines sorted as text keep each inode's names together, one line per group.
  const content = options.content
    ? [
        `  c=$({ find . -type f ${x} -exec md5sum {} + | sort; find . -type f -links +1 ${x} -exec stat -c '%i %n' {} + | sort | awk '$1 != p { if (g != "") print g; g = "" } { g = g " " $2; p = $1 } END { if (g != "") print g }' | sort; } | md5sum | cut -c1-12)`
      ]
    : []
  return [
    'sig() { (cd "$1" && b=0 && if [ -e buildstamp ]; then b=1; fi',
    `  n=$(find . ${x} | wc -l)`,
    `  m=$({ find . ! -type l ${x} -exec stat -c '%n|%F|%s|%u|%g|%a|%h' {} + ; find . -type l -exec stat -c '%n|%F|%u|%g|%N' {} + ; } | sort | md5sum | cut -c1-12)`,
    `  f=$(find . ! -type l ! -type d ${x} -exec stat -c '%n|%Y' {} + | sort | md5sum | cut -c1-12)`,
    `  d=$(find . -type d ${x} -exec stat -c '%n|%Y' {} + | sort | md5sum | cut -c1-12)`,
    ...content,
    `  echo "$n $m $f $d $b${options.content ? ' $c' : ''}"); }`
  ].join('\n')
}

export interface Signature {
  /** Entries below the root (buildstamp left out). */
  entries: number
  meta: string
  fileMtimes: string
  dirMtimes: string
  buildstamp: boolean
  /** Digest of the content and the hardlink groups (SignatureOptions.content). */
  content?: string
}

/** `SIG <name> <entries> <meta> <file mtimes> <dir mtimes> <buildstamp> [<content>]` lines from a build log. */
export function parseSignatures(log: string): Map<string, Signature> {
  const out = new Map<string, Signature>()
  for (const m of log.matchAll(/SIG (\S+) (\d+) ([0-9a-f]+) ([0-9a-f]+) ([0-9a-f]+) ([01])(?: ([0-9a-f]+))?\s*$/gm)) {
    out.set(m[1] as string, {
      entries: Number(m[2]),
      meta: m[3] as string,
      fileMtimes: m[4] as string,
      dirMtimes: m[5] as string,
      buildstamp: m[6] === '1',
      ...(m[7] !== undefined ? { content: m[7] } : {})
    })
  }
  return out
}

/** A build that prints the signature of each cache mount (read-only), under the given ids. */
export function signatureDockerfile(image: string, mounts: BenchMount[], ids: string[], nonce: string, signature: SignatureOptions = {}): string {
  const flags = mounts.map((m, i) => cacheFlag(m, { id: ids[i] as string, target: `/sig/${m.name}`, extra: ['readonly'] }))
  return [
    `FROM ${image}`,
    `RUN ${flags.join(' \\\n    ')} <<'EOS'`,
    `echo ${nonce} > /dev/null`,
    signatureFunction(signature),
    ...mounts.map(m => `echo "SIG ${m.name} $(sig /sig/${m.name})"`),
    'EOS',
    ''
  ].join('\n')
}
