import { existsSync } from 'node:fs';
import path from 'node:path';

/** The repository (or image) root: the nearest folder above this file that holds protos/. Works from sources and from dist/. */
export const PROJECT_ROOT: string = findRoot(__dirname);

function findRoot(start: string): string {
  let dir = start;
  for (;;) {
    if (existsSync(path.join(dir, 'protos', 'tensor.proto')) && existsSync(path.join(dir, 'package.json'))) return dir;
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error(`cannot find the project root (a folder with protos/ and package.json) above ${start}`);
    dir = parent;
  }
}
