#!/usr/bin/env node
// The CLI's bin entry (dist/cli.cjs); esbuild keeps the hashbang line first in the bundle.
import { cliMain } from './index.js'

// The explicit exit matters: the S3 and cache clients' HTTP agents can keep the event loop alive.
void cliMain(process.argv.slice(2)).then(code => process.exit(code))
