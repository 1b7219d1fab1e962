// The demo: the action's restore → build → save cycle on the local engine and a
// local cache service, three times: a cold run, a warm one on an emptied
// builder that adds a package (saved as a delta), and a third that restores
// the base and its delta; printing what moved, how much and how fast.
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import { bundleAction, REPO_ROOT, runStep, type StepResult } from '../test-support/action-runner.js'
import { startCacheService } from '../test-support/cache-service/server.js'
import { clientPathDir, pruneBuilder, UTILITY_IMAGE, userBuild, type ClientName } from '../test-support/user-build.js'

const client: ClientName = process.argv.includes('--classic') ? 'docker' : 'buildx'
const work = mkdtempSync(join(tmpdir(), 'bmc-demo-'))
const workspace = join(work, 'workspace')
const run = Date.now().toString(36)

// A user's Dockerfile: a package cache owned by a non-root user and a tool cache.
const dockerfile = `FROM ${UTILITY_IMAGE}
ARG RUN_ID
RUN --mount=type=cache,id=demo-packages-${run},target=/home/app/.cache,uid=1000,gid=1000 \\
    --mount=type=cache,id=demo-tools-${run},target=/opt/tools,sharing=locked <<'EOS'
set -eu
if [ -e /home/app/.cache/index ]; then
  echo "WARM: $(wc -l < /home/app/.cache/index) packages already in the cache mount, one more added"
  head -c 40000 /dev/urandom > /home/app/.cache/pkg-$RUN_ID.tgz && echo pkg-$RUN_ID >> /home/app/.cache/index
  chown 1000:1000 /home/app/.cache/pkg-$RUN_ID.tgz
else
  echo "COLD: downloading packages into the cache mount"
  i=0; while [ $i -lt 200 ]; do head -c 40000 /dev/urandom > /home/app/.cache/pkg-$i.tgz; echo pkg-$i >> /home/app/.cache/index; i=$((i+1)); done
  chown -R 1000:1000 /home/app/.cache
  head -c 3000000 /dev/urandom > /opt/tools/toolchain.bin
fi
EOS
`

const mounts = [`id=demo-packages-${run},target=/home/app/.cache,uid=1000,gid=1000`, `id=demo-tools-${run},target=/opt/tools,sharing=locked`].join(
  '\n'
)

function show(title: string, step: StepResult): void {
  console.log(`\n=== ${title} (exit ${step.exitCode})`)
  for (const line of step.stdout.split('\n')) {
    if (line.startsWith('::')) {
      if (line.startsWith('::warning')) console.log(`  WARNING ${line.slice(line.indexOf('::', 2) + 2)}`)
      continue
    }
    if (line.trim() !== '' && !line.startsWith('##[')) console.log(`  ${line}`)
  }
}

async function main(): Promise<void> {
  const engine = spawnSync('bash', [join(REPO_ROOT, 'scripts/engine.sh'), 'start'], { stdio: 'inherit' })
  if (engine.status !== 0) throw new Error('engine.sh start failed')
  const service = await startCacheService({ dataDir: join(work, 'cache-data') })
  const bundle = bundleAction()
  const path = clientPathDir(client)
  spawnSync('mkdir', ['-p', workspace])
  writeFileSync(join(workspace, 'Dockerfile'), dockerfile)
  const env = { ...service.env(), PATH: `${path.dir}:${process.env.PATH}`, RUNNER_TEMP: join(work, 'runner-temp'), GITHUB_WORKSPACE: workspace }
  const inputs = { mounts, 'key-files': 'Dockerfile', 'key-prefix': 'demo', 'utility-image': UTILITY_IMAGE, client }
  const step = (entry: 'main' | 'post', state?: Record<string, string>): Promise<StepResult> =>
    runStep(entry, { bundleDir: bundle.dir, inputs, env, cwd: workspace, ...(state ? { state } : {}) })
  const userStep = (label: string): void => {
    const started = Date.now()
    const log = userBuild(client, dockerfile, join(work, `out-${label}`), { RUN_ID: `${run}-${label}` })
    const said = log.split('\n').find(l => /COLD|WARM/.test(l) && !l.includes('echo')) ?? ''
    console.log(`\n=== user build, ${label} (${((Date.now() - started) / 1000).toFixed(1)} s)\n  ${said.replace(/^#\d+ [\d.]+ /, '')}`)
  }
  try {
    console.log(
      `Client: ${client === 'buildx' ? 'docker buildx build' : 'DOCKER_BUILDKIT=1 docker build (20.10 client)'}; cache service ${service.url}`
    )
    const cold = await step('main')
    show('main step, cold (empty cache)', cold)
    userStep('cold')
    show('post step, cold', await step('post', cold.state))

    pruneBuilder(client)
    console.log('\n=== builder emptied (build cache and cache mounts pruned), as on a fresh CI runner')

    const warm = await step('main')
    show('main step, warm', warm)
    userStep('warm')
    show('post step, warm (what changed is saved as a delta)', await step('post', warm.state))

    pruneBuilder(client)
    console.log('\n=== builder emptied again')
    const again = await step('main')
    show('main step, warm again (the base and its delta)', again)
    userStep('again')
    show('post step, warm again', await step('post', again.state))

    console.log('\n=== cache entries in the local service')
    for (const e of service.entries()) console.log(`  ${e.key}  ${(e.size / 1024).toFixed(0)} KiB`)
    console.log(`\noutputs of the warm main step: cache-hit=${warm.outputs['cache-hit']}\n  mounts=${warm.outputs.mounts}`)
  } finally {
    await service.close()
    bundle.cleanup()
    path.cleanup()
    rmSync(work, { recursive: true, force: true })
  }
}

main().catch((error: unknown) => {
  console.error(error)
  process.exit(1)
})
