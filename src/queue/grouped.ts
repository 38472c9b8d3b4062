import type { GroupingSettings } from "../config/index.js";
import type { Sql } from "../db/client.js";
import { type BatchAnswer, Batcher, KeyedBatcher } from "./batcher.js";
import {
  type Joined,
  type JoinRequest,
  joinMany,
  type PresentedToken,
  type TokenState,
  ticketStates,
} from "./index.js";

/*
 * The calls an opening rush makes by the thousand, grouped: joins of one room
 * become one waitroom.join_many, first reads of streams one
 * waitroom.ticket_states. The SQL decides everything; this only gathers.
 */

/**
 * A batch of first reads ranks its room's queue from the head to its furthest ticket (up to 10,000
 * places) whatever its size: in an opening rush, with opens trickling in as the service accepts
 * them, batches of one or two each paid that and kept the database busy on both cores (199 batches
 * for 10,000 opens, bench/notes/rush.md). Paced at 4, that fixed cost takes at most a quarter of
 * the time of the connections reading (up to 100 ms between batches); an open after a quiet spell still
 * goes out at once.
 */
const READ_PACE = 4;
/** A large batch takes long for its own rows, which are no waste: waiting 4× that would only delay the next. */
const READ_PACE_LIMIT_MS = 100;

export type GroupedQueue = {
  join(room: string, request: JoinRequest): Promise<Joined>;
  /** The verdict on a presented token and the ticket's state, read together with others arriving now. */
  tokenState(presented: PresentedToken): Promise<TokenState>;
};

const answered = <T>(values: T[]): BatchAnswer<T>[] => values.map((value) => ({ ok: true, value }));

const sqlState = (error: unknown) => (error as { code?: unknown }).code;

export function createGroupedQueue(
  sql: Sql,
  settings: GroupingSettings,
  onBatch?: (kind: "join" | "read", size: number) => void,
): GroupedQueue {
  const alone = (room: string, request: JoinRequest): Promise<BatchAnswer<Joined>> =>
    joinMany(sql, room, [request]).then(
      ([joined]): BatchAnswer<Joined> =>
        joined ? { ok: true, value: joined } : { ok: false, error: new Error("join_many answered no row") },
      (error: unknown): BatchAnswer<Joined> => ({ ok: false, error }),
    );
  /**
   * A batch larger than the room's queue has room for (WRFUL): its joins one after another, in
   * arrival order, so the first take what room is left. Once one is refused, the anonymous ones
   * after it are refused without a statement (they would need room too); re-joins still go through.
   */
  const untilFull = async (room: string, requests: JoinRequest[]): Promise<BatchAnswer<Joined>[]> => {
    const answers: BatchAnswer<Joined>[] = [];
    let full: BatchAnswer<Joined> | undefined;
    for (const request of requests) {
      const answer = full && request.holder === undefined ? full : await alone(room, request);
      if (!answer.ok && sqlState(answer.error) === "WRFUL") full = answer;
      answers.push(answer);
    }
    return answers;
  };
  const batch = async (room: string, requests: JoinRequest[]): Promise<BatchAnswer<Joined>[]> => {
    try {
      return answered(await joinMany(sql, room, requests));
    } catch (error) {
      // The statement wrote nothing. An unknown, closed or sold-out room, or an outage, is every
      // caller's answer; a bad holder or priority (WR400) is one caller's, so each join is tried alone.
      if (requests.length === 1) throw error;
      // So is a holder with no share left (WRQUO).
      if (sqlState(error) === "WR400" || sqlState(error) === "WRQUO") {
        return Promise.all(requests.map((request) => alone(room, request)));
      }
      if (sqlState(error) === "WRFUL") return untilFull(room, requests);
      if (sqlState(error) === "WRPOW") return withoutUnproven(room, requests, error);
      throw error;
    }
  };
  /**
   * A batch refused for a weak proof of work (WRPOW): the room asks for one, so the joins that
   * brought none are refused without a statement (a flood of them costs one statement per batch);
   * the rest go as one batch again, or, when none was dropped, one by one.
   */
  const withoutUnproven = async (
    room: string,
    requests: JoinRequest[],
    refusal: unknown,
  ): Promise<BatchAnswer<Joined>[]> => {
    const rest = requests.filter((request) => request.proven !== 0);
    const restAnswers =
      rest.length === requests.length
        ? await Promise.all(rest.map((request) => alone(room, request)))
        : rest.length > 0
          ? await batch(room, rest)
          : [];
    return requests.map((request) =>
      request.proven === 0 ? { ok: false, error: refusal } : (restAnswers.shift() as BatchAnswer<Joined>),
    );
  };
  const joins = new KeyedBatcher<JoinRequest, Joined>(batch, {
    maxBatch: settings.maxJoinBatch,
    maxInFlight: settings.maxJoinsInFlight,
    onBatch: (size) => onBatch?.("join", size),
  });
  const reads = new Batcher<PresentedToken, TokenState>(
    async (presented) => answered(await ticketStates(sql, presented)),
    {
      maxBatch: settings.maxReadBatch,
      maxInFlight: settings.maxReadsInFlight,
      pace: READ_PACE,
      paceLimitMs: READ_PACE_LIMIT_MS,
      onBatch: (size) => onBatch?.("read", size),
    },
  );
  return {
    join: (room, request) => joins.submit(room, request),
    tokenState: (presented) => reads.submit(presented),
  };
}
