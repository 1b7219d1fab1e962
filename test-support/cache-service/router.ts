// A tiny method + path router: routes are tried in the order they were added;
// the first whose method (or '*') and path pattern match gets the request,
// with the pattern's capture groups as params; nothing matching goes to the
// fallback.

import type * as http from 'node:http'

export interface RouteCall {
  req: http.IncomingMessage
  res: http.ServerResponse
  /** The request URL, parsed against http://127.0.0.1. */
  url: URL
  /** Capture groups of the matched path pattern ('' for a group that did not take part). */
  params: string[]
}

export type RouteHandler = (call: RouteCall) => Promise<void>

export interface Route<H = RouteHandler> {
  /** An HTTP method, or '*' for any. */
  method: string
  pattern: RegExp
  handler: H
}

const escapeRegExp = (s: string): string => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')

/** Matches exactly this path. */
export const exactly = (path: string): RegExp => new RegExp(`^${escapeRegExp(path)}$`)

/** Matches any path starting with `prefix`; params[0] is the rest. */
export const under = (prefix: string): RegExp => new RegExp(`^${escapeRegExp(prefix)}([\\s\\S]*)$`)

export class Router {
  readonly #routes: Route[] = []

  constructor(private readonly fallback: RouteHandler) {}

  on(method: string, pattern: RegExp, handler: RouteHandler): this {
    this.#routes.push({ method, pattern, handler })
    return this
  }

  handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1')
    const method = req.method ?? 'GET'
    for (const route of this.#routes) {
      if (route.method !== '*' && route.method !== method) continue
      const m = route.pattern.exec(url.pathname)
      if (m) return route.handler({ req, res, url, params: m.slice(1).map(p => p ?? '') })
    }
    return this.fallback({ req, res, url, params: [] })
  }
}
