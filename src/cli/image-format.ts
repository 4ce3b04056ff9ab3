/** The rows `images` and `history` give a `--format` template: Docker's field names and words. */
import { shortId } from '../store/layout.js';
import type { HistoryRow, ImageRow } from '../store/inspect.js';
import { humanAgo, humanSize } from './format.js';
import { strictRow } from './format-template.js';
import type { StrictObject } from './go-template.js';

/** Go's time.Time String(): `2024-01-02 15:04:05 +0000 UTC`. */
function goTime(iso: string): string {
  return `${new Date(iso).toISOString().replace('T', ' ').replace(/\.\d+Z$/, '')} +0000 UTC`;
}

const IMAGE_HEADERS: Record<string, string> = {
  Containers: 'CONTAINERS', CreatedAt: 'CREATED AT', CreatedSince: 'CREATED', Digest: 'DIGEST', ID: 'IMAGE ID', Repository: 'REPOSITORY',
  SharedSize: 'SHARED SIZE', Size: 'SIZE', Tag: 'TAG', UniqueSize: 'UNIQUE SIZE', VirtualSize: 'VIRTUAL SIZE',
};

/** Docker's imageContext for one `images` row (keys sorted, as `{{json .}}` prints them). */
export function imageRow(r: ImageRow): StrictObject {
  return strictRow('*formatter.imageContext', {
    Containers: 'N/A', CreatedAt: goTime(r.created), CreatedSince: humanAgo(r.created), Digest: '<none>', ID: shortId(r.id),
    Repository: r.repository, SharedSize: 'N/A', Size: humanSize(r.size), Tag: r.tag, UniqueSize: 'N/A', VirtualSize: humanSize(r.virtualSize),
  });
}
export const IMAGE_HEADER = strictRow('*formatter.imageContext', IMAGE_HEADERS);

/** Docker's Ellipsis: at most `max` characters, the last one `…`. */
function ellipsis(s: string, max: number): string {
  return [...s].length <= max ? s : `${[...s].slice(0, max - 1).join('')}…`;
}

/** Docker's historyContext for one `history` row. */
export function historyRow(r: HistoryRow, noTrunc: boolean): StrictObject {
  return strictRow('*formatter.historyContext', {
    Comment: r.comment, CreatedAt: new Date(r.created).toISOString().replace(/\.\d+Z$/, 'Z'), CreatedBy: noTrunc ? r.createdBy : ellipsis(r.createdBy, 45),
    CreatedSince: humanAgo(r.created), ID: noTrunc ? `sha256:${r.id}` : shortId(r.id), Size: humanSize(r.size),
  });
}
export const HISTORY_HEADER = strictRow('*formatter.historyContext', {
  Comment: 'COMMENT', CreatedAt: 'CREATED AT', CreatedBy: 'CREATED BY', CreatedSince: 'CREATED', ID: 'IMAGE', Size: 'SIZE',
});
