/**
 * Items that become ready one by one (restored mounts, as their downloads
 * finish), read either as they come (`for await`, once) or all at once when
 * the producer is done (`all()`, any number of times).
 */
export class ReadyQueue<T> {
  private readonly items: T[] = []
  private ended = false
  private wake: (() => void) | undefined
  private readonly endedPromise: Promise<void>
  private resolveEnded!: () => void

  constructor() {
    this.endedPromise = new Promise(resolve => {
      this.resolveEnded = resolve
    })
  }

  push(item: T): void {
    if (this.ended) throw new Error('push after end')
    this.items.push(item)
    this.poke()
  }

  end(): void {
    this.ended = true
    this.resolveEnded()
    this.poke()
  }

  /** Resolves with the first item, or undefined when the queue ends empty. */
  async first(): Promise<T | undefined> {
    while (this.items.length === 0 && !this.ended) await this.next()
    return this.items[0]
  }

  /** Every item, once the producer has ended. */
  async all(): Promise<T[]> {
    await this.endedPromise
    return [...this.items]
  }

  async *[Symbol.asyncIterator](): AsyncIterator<T> {
    for (let i = 0; ; i++) {
      while (i >= this.items.length && !this.ended) await this.next()
      if (i >= this.items.length) return
      yield this.items[i] as T
    }
  }

  private async next(): Promise<void> {
    await new Promise<void>(resolve => {
      const previous = this.wake
      this.wake = () => {
        previous?.()
        resolve()
      }
    })
  }

  private poke(): void {
    const wake = this.wake
    this.wake = undefined
    wake?.()
  }
}
