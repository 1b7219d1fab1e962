import { runEntry, runPost } from './index.js'

runEntry(() => runPost(), false)
