// Generated from action.yml by scripts/input-defaults.mjs: do not edit.
/** The action's input defaults, for readers that no runner fills in (the CLI, tests). */
export const INPUT_DEFAULTS: Readonly<Record<string, string>> = {
  context: '.',
  'key-prefix': 'buildkit-mount-cache',
  'utility-image': 'ghcr.io/containerd/busybox:1.36',
  'max-restore-size': '64G',
  client: 'auto',
  save: 'true',
  'extract-via': 'auto',
  backend: 'github',
  'lookup-only': 'false',
  'fail-on-cache-miss': 'false',
  'exact-match': 'false',
  deltas: 'true',
  'delete-superseded': 'false'
}
