import { InputName, type InputReader } from '../action/inputs.js'
import type { CacheStore } from '../storage/store.js'
import { isManagedStore, type ManagedStore } from '../storage/managed.js'
import { UsageError, type CliOptions } from './args.js'
import type { Output } from './output.js'

/** What every command runs with: its options, the terminal, and the opened store. */
export interface CommandContext {
  options: CliOptions
  output: Output
  store: CacheStore
  /** The action's inputs as the options give them (cliInputs). */
  read: InputReader
  /** Where mount archives wait (a private directory for self-hosted backends). */
  archiveRoot: string
}

/** The store's location for messages. */
export function storeName(store: CacheStore): string {
  return isManagedStore(store) ? store.location : 'the GitHub Actions cache'
}

/** ls and prune need a store that can list: the GitHub cache cannot be listed with a job token and evicts by itself. */
export function managedStore(store: CacheStore, command: string): ManagedStore {
  if (isManagedStore(store)) return store
  throw new UsageError(`${command} needs a dir: or s3:// backend (the GitHub Actions cache evicts entries by itself)`)
}

/** The key prefix every entry of this project starts with (the key-prefix input, defaulted as every input is). */
export function keyPrefix(read: InputReader): string {
  return read(InputName.keyPrefix).trim()
}
