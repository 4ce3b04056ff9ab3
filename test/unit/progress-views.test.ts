import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ProgressTracker } from '../../src/progress/tracker.js';
import { TtyFrame, cleanLine } from '../../src/progress/tty-frame.js';
import { PlainView } from '../../src/progress/plain.js';
import type { ViewEvent } from '../../src/progress/view-event.js';

/** A tracker on a fake clock feeding a tty frame and a plain view; two stages run at once. */
function twoStages(): { frame: TtyFrame; plain: string[]; tracker: ProgressTracker; clock: { t: number } } {
  const clock = { t: 1_000_000 };
  const frame = new TtyFrame();
  const plain: string[] = [];
  const view = new PlainView((s) => plain.push(s));
  const tracker = new ProgressTracker((e: ViewEvent) => { frame.feed(e); view.event(e); }, () => clock.t);
  tracker.plan([{ index: 0, name: 'a', firstNumber: 1, count: 2 }, { index: 1, name: undefined, firstNumber: 3, count: 2 }], 4);
  tracker.event(0, { type: 'step', n: 1, total: 4, text: 'FROM busybox AS a' });
  tracker.event(1, { type: 'step', n: 3, total: 4, text: 'FROM busybox' });
  tracker.event(0, { type: 'step', n: 2, total: 4, text: 'RUN make' });
  tracker.event(0, { type: 'cache-miss', reason: 'no earlier build of this step' });
  tracker.event(1, { type: 'step', n: 4, total: 4, text: 'RUN test' });
  tracker.event(1, { type: 'cache-miss', reason: 'instruction changed' });
  clock.t += 1500;
  tracker.event(0, { type: 'output', text: 'l1\nl2\nl3\nl4\nl5\npart' });
  return { frame, plain, tracker, clock };
}

test('running steps side by side when wide, stacked when narrow; the output tail is the last lines', () => {
  const { frame, clock } = twoStages();
  const wide = frame.frame(clock.t, 120, 40);
  assert.equal(wide[0], '[+] Building 1.5s (2/4 steps, 4 in the Dockerfile)');
  assert.match(wide[1]!, /^ => \[a 1\/2\] FROM busybox AS a +0\.0s$/);
  const row = wide.find((l) => l.includes('[a 2/2] RUN make'))!;
  assert.match(row, /\[a 2\/2\] RUN make +1\.5s │ \[stage-1 2\/2\] RUN test +1\.5s/);
  assert.ok(wide.some((l) => l.startsWith(' miss: no earlier build of this step')));
  const tail = wide.filter((l) => l.startsWith(' > ')).map((l) => l.split('│')[0]!.trim());
  assert.deepEqual(tail, ['> l3', '> l4', '> l5', '> part']);
  const narrow = frame.frame(clock.t, 50, 40);
  assert.ok(narrow.every((l) => !l.includes('│')));
  assert.ok(narrow.every((l) => [...l].length <= 49), narrow.join('\n'));
  assert.ok(frame.frame(clock.t, 120, 5).length <= 4, 'never taller than the terminal');
});

test('the summary lists every step with its time, cached ones marked; a failed step shows its output', () => {
  const { frame, tracker, clock, plain } = twoStages();
  tracker.event(1, { type: 'image', id: 'f'.repeat(64) });
  tracker.event(1, { type: 'step', n: 5, total: 4, text: 'CMD x' });
  tracker.event(1, { type: 'cache-hit', n: 5 });
  tracker.event(1, { type: 'image', id: 'e'.repeat(64) });
  tracker.stageEnd(1);
  clock.t += 500;
  tracker.stageEnd(0, { message: "The command '/bin/sh -c make' returned a non-zero code: 2", cancelled: false });
  tracker.end('failed');
  const s = frame.summary(clock.t, 100);
  assert.match(s[0]!, /\) FAILED$/);
  assert.match(s.join('\n'), /^ => \[stage-1 2\/2\] RUN test \(miss: instruction changed\) +1\.5s$/m);
  assert.match(s.join('\n'), /^ => CACHED \[stage-1 3\/2\] CMD x +0\.0s$/m);
  assert.match(s.join('\n'), /^ => ERROR \[a 2\/2\] RUN make +2\.0s$/m);
  assert.ok(s.includes('   l5'));
  const text = plain.join('');
  assert.match(text, /^#5 CACHED$/m);
  assert.match(text, /^#4 DONE 1\.5s$/m);
  assert.match(text, /^#2 1\.500 l1$/m);
  assert.match(text, /^#2 2\.000 part$/m, 'a partial line is flushed when the step ends');
  assert.match(text, /^#2 ERROR: The command/m);
});

test('hostile output loses its control sequences', () => {
  assert.equal(cleanLine('a\x1b[2J\x1b[Hb\x1b]0;title\x07c\x07d\x1b[31me'), 'abcde');
  assert.equal(cleanLine('10%\r50%\r100%'), '100%');
  assert.equal(cleanLine('x\ty\x00\x9b'), 'x  y');
});
