import { watchedAncestors } from '../../tools/start';

/** /proc/<pid>/stat of a process whose parent is `ppid` (a command with spaces and parentheses, as stat allows). */
const stat = (pid: number, ppid: number): string => `${pid} (sh -c (npm) x) S ${ppid} ${pid} ${pid} 0 -1 4194560`;

describe('which processes the launcher outlives', () => {
  test('under npm (npm_lifecycle_event set) it watches its parent (the script shell) and grandparent (npm)', () => {
    expect(watchedAncestors({ npm_lifecycle_event: 'start' }, 400, (pid) => (pid === 400 ? stat(400, 300) : undefined))).toEqual([400, 300]);
  });

  test('under npm without /proc it watches its parent alone; init (pid 1) is never watched', () => {
    expect(watchedAncestors({ npm_lifecycle_event: 'start' }, 400, () => undefined)).toEqual([400]);
    expect(watchedAncestors({ npm_lifecycle_event: 'start' }, 400, () => stat(400, 1))).toEqual([400]);
    expect(watchedAncestors({ npm_lifecycle_event: 'start' }, 1, () => stat(1, 0))).toEqual([]);
  });

  test('run directly (setsid or nohup node dist/tools/start.js &) it watches nothing: the shell that started it may exit', () => {
    expect(watchedAncestors({}, 400, (pid) => stat(pid, 300))).toEqual([]);
  });
});
