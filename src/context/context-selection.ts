/**
 * Which paths of a context folder the build sees, as Docker 20.10 decides it: the docker CLI
 * walks the folder (`archive.TarWithOptions`) and sends an entry unless `.dockerignore`
 * excludes it; an excluded directory is skipped whole unless an exception pattern starts with
 * its path, in which case it is walked for the entries the exceptions bring back but not sent
 * itself. The daemon unpacks what was sent, so such a directory still exists there ("implied",
 * created 0755 and owned by root) when something below it was sent, and not at all otherwise.
 */
import { readdirSync, type Dirent } from 'node:fs';
import path from 'node:path';
import type { IgnoreMatcher } from './dockerignore.js';

function children(abs: string): Dirent[] {
  try {
    return readdirSync(abs, { withFileTypes: true });
  } catch {
    return [];
  }
}

/** The build's view of one context folder under one set of `.dockerignore` patterns. */
export class ContextSelection {
  /** Excluded directories, walked: whether anything below them is sent. */
  private readonly sentBelow = new Map<string, boolean>();

  constructor(readonly dir: string, private readonly matcher: IgnoreMatcher) {}

  /** True when the walk enters the directory `rel`: it is sent, or an exception may lie below. */
  private descends(rel: string): boolean {
    return !this.matcher.matches(rel) || this.matcher.mayHaveExceptions(rel);
  }

  /** True when every directory above `rel` is entered by the walk. */
  private reachable(rel: string): boolean {
    const parts = rel.split('/');
    for (let i = 1; i < parts.length; i++) if (!this.descends(parts.slice(0, i).join('/'))) return false;
    return true;
  }

  /** True when the walk sends the entry `rel` itself (its folders above entered, it not excluded). */
  isSent(rel: string): boolean {
    return rel === '.' || rel === '' || (this.reachable(rel) && !this.matcher.matches(rel));
  }

  /**
   * True when the build sees `rel` (a context-relative `/` path): it is sent, or it is an
   * excluded directory that the walk entered and below which something was sent.
   */
  isPresent(rel: string): boolean {
    if (this.isSent(rel)) return true;
    return this.isImplied(rel);
  }

  /** True for an excluded directory that exists for the build only because something below it was sent. */
  isImplied(rel: string): boolean {
    if (rel === '.' || rel === '' || !this.reachable(rel) || !this.matcher.matches(rel) || !this.matcher.mayHaveExceptions(rel)) return false;
    return this.sendsBelow(rel);
  }

  /** Whether the walk of the entered directory `rel` sends anything (memoized). */
  private sendsBelow(rel: string): boolean {
    const known = this.sentBelow.get(rel);
    if (known !== undefined) return known;
    let found = false;
    for (const e of children(path.join(this.dir, rel))) {
      const child = `${rel}/${e.name}`;
      if (!this.matcher.matches(child) || (e.isDirectory() && this.matcher.mayHaveExceptions(child) && this.sendsBelow(child))) {
        found = true;
        break;
      }
    }
    this.sentBelow.set(rel, found);
    return found;
  }

  /**
   * The entries a packer must start from to send what the docker CLI sends when it walks only
   * into the directories it sends: `.` and every sent entry whose parent directory is implied
   * (names relative, parents before children).
   */
  packRoots(): string[] {
    const roots = ['.'];
    const visit = (rel: string, parentImplied: boolean): void => {
      for (const e of children(rel === '' ? this.dir : path.join(this.dir, rel))) {
        const child = rel === '' ? e.name : `${rel}/${e.name}`;
        if (!this.matcher.matches(child)) {
          if (parentImplied) roots.push(child);
          if (e.isDirectory()) visit(child, false);
        } else if (e.isDirectory() && this.isImplied(child)) {
          visit(child, true);
        }
      }
    };
    visit('', false);
    return roots;
  }
}
