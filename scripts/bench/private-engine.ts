// `--private-engine`: a second dockerd, the same binary scripts/engine.sh
// provisions (dockerd 26, docker driver, overlay2), with its own socket,
// data root and exec root, and no iptables rules. Other jobs on the
// machine build and `buildx prune --all` on the shared engine all the time;
// in here nobody else empties the bench's cache mounts, and the bench's
// prunes touch nobody else. Measured work is identical: same daemon, same
// BuildKit, same disk. Its containers and RUN steps get a bridge of their own
// (BuildKit's default network needs one; no iptables, no forwarding). Stopped
// (by its pid) and deleted, bridge included, at the end.
import { spawn } from 'node:child_process'
import { existsSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import { q, sh } from './lib.js'

export interface PrivateEngine {
  /** DOCKER_HOST value. */
  host: string
  pid: number
  logFile: string
  stop(): Promise<void>
}

export async function startPrivateEngine(tag: string, utilityImage: string): Promise<PrivateEngine> {
  const root = join(process.env.ENGINE_PREFIX ?? '/opt/buildkit-mount-cache-engine', 'root')
  const dockerd = join(root, 'usr/sbin/dockerd')
  if (!existsSync(dockerd)) throw new Error(`${dockerd} is missing: run bash scripts/engine.sh start first`)
  const dir = mkdtempSync(join(tmpdir(), 'bmc-bench-engine-'))
  // Short paths: containerd's sockets live under the exec root (sun_path limit).
  const execRoot = `/run/bmcb-${tag}`
  const sock = `/run/bmcb-${tag}.sock`
  const host = `unix://${sock}`
  const logFile = join(dir, 'dockerd.log')
  const log = openSync(logFile, 'a')
  const bridge = `bmcb${tag.slice(-8)}`
  const used = (await sh('ip -4 -o addr')).stdout
  const free = Array.from({ length: 200 }, (_, i) => 20 + ((i + Number.parseInt(tag.slice(-4), 36)) % 200)).find(n => !used.includes(`10.213.${n}.`))
  await sh(`ip link add name ${bridge} type bridge && ip addr add 10.213.${free}.1/24 dev ${bridge} && ip link set ${bridge} up`)
  const args = [
    '--storage-driver',
    'overlay2',
    '--data-root',
    join(dir, 'data'),
    '--exec-root',
    execRoot,
    '--pidfile',
    join(dir, 'dockerd.pid'),
    '-H',
    host,
    '--bridge',
    bridge,
    '--iptables=false',
    '--ip-forward=false',
    '--ip-masq=false'
  ]
  const path = [`${root}/usr/sbin`, `${root}/usr/libexec/docker`, `${root}/usr/bin`, process.env.PATH ?? '/usr/bin:/bin'].join(':')
  const child = spawn(dockerd, args, { cwd: '/', detached: true, stdio: ['ignore', log, log], env: { ...process.env, PATH: path } })
  child.unref()
  const pid = child.pid
  if (pid === undefined) throw new Error('could not start the private dockerd')

  const alive = (): boolean => {
    try {
      process.kill(pid, 0)
      return !readFileSync(`/proc/${pid}/stat`, 'utf8').includes(') Z ')
    } catch {
      return false
    }
  }
  const stop = async (): Promise<void> => {
    if (alive()) process.kill(pid, 'SIGTERM')
    for (let i = 0; i < 150 && alive(); i++) await new Promise(r => setTimeout(r, 200))
    if (alive()) process.kill(pid, 'SIGKILL')
    await sh(`ip link del ${bridge}`, { allowFail: true })
    const mounted = readFileSync('/proc/mounts', 'utf8')
      .split('\n')
      .filter(l => l.includes(dir) || l.includes(execRoot))
    if (mounted.length > 0) {
      console.error(`private engine: mounts left under ${dir} / ${execRoot}; not deleting them:\n${mounted.join('\n')}`)
      return
    }
    rmSync(dir, { recursive: true, force: true })
    rmSync(execRoot, { recursive: true, force: true })
    rmSync(sock, { force: true })
  }

  const env = { DOCKER_HOST: host }
  for (let i = 0; ; i++) {
    if ((await sh('docker info --format "{{.ServerVersion}}"', { env, allowFail: true })).code === 0) break
    if (!alive() || i > 300) {
      await stop()
      throw new Error(`the private dockerd did not come up; log:\n${readFileSync(logFile, 'utf8').slice(-3000)}`)
    }
    await new Promise(r => setTimeout(r, 200))
  }
  // The utility image comes from the shared engine (no registry here).
  try {
    await sh(`docker save ${q(utilityImage)} | DOCKER_HOST=${q(host)} docker load -q`)
  } catch (error) {
    await stop()
    throw error
  }
  return { host, pid, logFile, stop }
}
