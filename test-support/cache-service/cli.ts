// Standalone cache service:
//
//   npx tsx test-support/cache-service/cli.ts --data-dir DIR [--port N] [--token T]
//       [--github-token T] [--repository OWNER/NAME] [--json] [--v1] [--log]
//
// Prints the client env (KEY=VALUE lines, or one JSON object with --json; the
// v1/GHES variant with --v1), with the REST API's (GITHUB_API_URL,
// GITHUB_REPOSITORY, GITHUB_REF) and its token as GITHUB_TOKEN, on stdout
// once listening, then serves until
// SIGTERM/SIGINT. --log writes one line per request to stderr. Faults can be
// injected from another process through POST /_control/faults (bearer token =
// ACTIONS_RUNTIME_TOKEN), see controlClient() in server.ts.

import { parseArgs } from 'node:util'
import { formatEnv } from './env.js'
import { startCacheService } from './server.js'

const usage = 'usage: cli.ts --data-dir DIR [--port N] [--token T] [--github-token T] [--repository OWNER/NAME] [--json] [--v1] [--log]'

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      'data-dir': { type: 'string' },
      port: { type: 'string' },
      token: { type: 'string' },
      'github-token': { type: 'string' },
      repository: { type: 'string' },
      json: { type: 'boolean', default: false },
      v1: { type: 'boolean', default: false },
      log: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false }
    },
    strict: true
  })
  if (values.help) {
    process.stdout.write(`${usage}\n`)
    return
  }
  const dataDir = values['data-dir']
  const port = values.port === undefined ? 0 : Number(values.port)
  if (!dataDir || !Number.isInteger(port) || port < 0 || port > 65535) {
    process.stderr.write(`${usage}\n`)
    process.exitCode = 2
    return
  }

  const service = await startCacheService({
    dataDir,
    port,
    ...(values.token ? { token: values.token } : {}),
    ...(values['github-token'] ? { githubToken: values['github-token'] } : {}),
    ...(values.repository ? { repository: values.repository } : {}),
    ...(values.log
      ? {
          onRequest: r =>
            process.stderr.write(
              `${r.time} ${r.method} ${r.path}${r.query} -> ${r.status ?? 0}${r.dropped ? ' (dropped)' : ''} ` +
                `${r.op}${r.key === undefined ? '' : ` key=${r.key}`}${r.fault ? ` fault=${r.fault}` : ''}\n`
            )
        }
      : {})
  })
  process.stdout.write(formatEnv({ ...service.env(values.v1 ? 'v1' : 'v2'), GITHUB_TOKEN: service.githubToken }, values.json ? 'json' : 'lines'))

  let closing = false
  const shutdown = (signal: string): void => {
    if (closing) return
    closing = true
    process.stderr.write(`cache-service: ${signal}, closing\n`)
    service.close().then(
      () => process.exit(0),
      (err: unknown) => {
        process.stderr.write(`cache-service: close failed: ${String(err)}\n`)
        process.exit(1)
      }
    )
  }
  process.on('SIGTERM', () => shutdown('SIGTERM'))
  process.on('SIGINT', () => shutdown('SIGINT'))
}

main().catch((err: unknown) => {
  process.stderr.write(`cache-service: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`)
  process.exit(1)
})
