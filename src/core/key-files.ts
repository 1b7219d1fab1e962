/**
 * Hashes key-file pattern lists (each distinct list once) and finds the
 * patterns that match no file, so a typo (`package-lock.jsn`) is a warning
 * naming it instead of a silent `nofiles` key. A pattern is checked on its
 * own through the same hash function: no match is the empty hash.
 * Negated patterns (`!…`) only remove files and are not checked.
 */
export class KeyFiles {
  private readonly hashes = new Map<string, Promise<string>>()
  /** Pattern → the mounts whose keys use it, in order. */
  private readonly users = new Map<string, string[]>()

  constructor(private readonly hashFiles: (patterns: string) => Promise<string>) {}

  /** The hash of the files `patterns` match ('' for none or no patterns), recording that mount `id` uses them. */
  hash(patterns: string[], id: string): Promise<string> {
    for (const pattern of patterns) {
      const ids = this.users.get(pattern) ?? []
      if (!ids.includes(id)) ids.push(id)
      this.users.set(pattern, ids)
    }
    return this.hashOf(patterns.join('\n'))
  }

  /** One warning per pattern that matches no file, naming it and the mounts it was meant for. */
  async unmatched(): Promise<string[]> {
    const out: string[] = []
    for (const [pattern, ids] of this.users) {
      if (pattern.startsWith('!') || (await this.hashOf(pattern)) !== '') continue
      out.push(
        `key-files: no file matches ${JSON.stringify(pattern)} (patterns are relative to the workspace); it adds nothing to the keys of ${ids.map(id => JSON.stringify(id)).join(', ')}`
      )
    }
    return out
  }

  private hashOf(text: string): Promise<string> {
    if (text === '') return Promise.resolve('')
    let hash = this.hashes.get(text)
    if (hash === undefined) {
      hash = this.hashFiles(text)
      this.hashes.set(text, hash)
    }
    return hash
  }
}
