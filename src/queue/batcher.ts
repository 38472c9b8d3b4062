/*
 * Group commit for calls that arrive together. A call waits only for the
 * end of the current turn of the event loop, so one arriving alone goes out
 * at once; calls arriving while earlier batches are in flight gather into the
 * next batch. Under a rush the batches grow by themselves, up to maxBatch,
 * and the database sees one statement per batch instead of one per call.
 *
 * A statement with a fixed cost (ranking a queue's head, say) can be paced:
 * when calls trickle in faster than batches finish but slower than they
 * would fill one, batches of one or two would each pay that cost, and the
 * database would spend all its time on it. Paced, a batch starts no sooner
 * than `pace` times the last batch's duration after the last one started.
 */

export type BatcherOptions = {
  /** Most calls sent in one batch. */
  maxBatch: number;
  /** Most batches in flight at once; calls beyond wait for the next batch. */
  maxInFlight: number;
  /** Called with the size of every batch sent (for metrics). */
  onBatch?: (size: number) => void;
  /** Called when the last batch in flight is answered and nothing is queued. */
  onIdle?: () => void;
  /**
   * 0 or absent: no pacing. N: a batch starts no sooner than N × the last answered batch's duration
   * after the last batch started, so the statement's fixed cost takes at most 1/N of the database's
   * time. A call after a quiet spell still goes out at once.
   */
  pace?: number;
  /** The longest a paced batch waits: a large batch's duration is mostly its own rows, not the fixed cost. */
  paceLimitMs?: number;
  /** Time and timers (tests drive them by hand). */
  clock?: BatcherClock;
};

export type BatcherClock = { now(): number; after(ms: number, run: () => void): void };

const realClock: BatcherClock = {
  now: () => performance.now(),
  after: (ms, run) => void setTimeout(run, ms),
};

/** What a batch answers for each of its calls, in order: a result, or the error of that call alone. */
export type BatchAnswer<Out> = { ok: true; value: Out } | { ok: false; error: unknown };

type Pending<In, Out> = { input: In; resolve: (value: Out) => void; reject: (error: unknown) => void };

export class Batcher<In, Out> {
  readonly #run: (inputs: In[]) => Promise<BatchAnswer<Out>[]>;
  readonly #options: BatcherOptions;
  #queue: Pending<In, Out>[] = [];
  #inFlight = 0;
  #scheduled = false;
  readonly #clock: BatcherClock;
  #lastStartedAt = Number.NEGATIVE_INFINITY;
  #lastDurationMs = 0;

  /** `run` answers every input of a batch; if it throws, every call of the batch fails with that error. */
  constructor(run: (inputs: In[]) => Promise<BatchAnswer<Out>[]>, options: BatcherOptions) {
    this.#run = run;
    this.#options = options;
    this.#clock = options.clock ?? realClock;
  }

  /** Nothing queued and nothing in flight. */
  get idle(): boolean {
    return this.#queue.length === 0 && this.#inFlight === 0;
  }

  submit(input: In): Promise<Out> {
    return new Promise<Out>((resolve, reject) => {
      this.#queue.push({ input, resolve, reject });
      this.#schedule();
    });
  }

  #schedule(): void {
    if (this.#scheduled || this.#queue.length === 0 || this.#inFlight >= this.#options.maxInFlight) return;
    this.#scheduled = true;
    const flush = () => {
      this.#scheduled = false;
      this.#flush();
    };
    const paceMs = Math.min(this.#pace * this.#lastDurationMs, this.#options.paceLimitMs ?? Number.POSITIVE_INFINITY);
    const waitMs = this.#lastStartedAt + paceMs - this.#clock.now();
    if (waitMs > 0) this.#clock.after(waitMs, flush);
    // After the I/O of this turn: every request parsed in it joins the batch.
    else setImmediate(flush);
  }

  get #pace(): number {
    return this.#options.pace ?? 0;
  }

  #flush(): void {
    while (this.#queue.length > 0 && this.#inFlight < this.#options.maxInFlight) {
      const batch = this.#queue.splice(0, this.#options.maxBatch);
      this.#lastStartedAt = this.#clock.now();
      this.#inFlight += 1;
      this.#options.onBatch?.(batch.length);
      this.#send(batch, this.#lastStartedAt).finally(() => {
        this.#inFlight -= 1;
        this.#schedule();
        if (this.idle) this.#options.onIdle?.();
      });
      // Paced: the next batch waits for its turn.
      if (this.#pace > 0 && this.#lastDurationMs > 0) break;
    }
    this.#schedule();
  }

  async #send(batch: Pending<In, Out>[], startedAt: number): Promise<void> {
    // Timed before anyone hears the answer, so that a call made on hearing it is paced by it.
    const answered = () => {
      this.#lastDurationMs = this.#clock.now() - startedAt;
    };
    try {
      const answers = await this.#run(batch.map((call) => call.input)).finally(answered);
      batch.forEach((call, i) => {
        const answer = answers[i];
        if (!answer) call.reject(new Error(`batch answered ${answers.length} of ${batch.length} calls`));
        else if (answer.ok) call.resolve(answer.value);
        else call.reject(answer.error);
      });
    } catch (error) {
      for (const call of batch) call.reject(error);
    }
  }
}

/** One batcher per key (a room, say), created on first use and dropped once idle. */
export class KeyedBatcher<In, Out> {
  readonly #run: (key: string, inputs: In[]) => Promise<BatchAnswer<Out>[]>;
  readonly #options: BatcherOptions;
  readonly #batchers = new Map<string, Batcher<In, Out>>();

  constructor(run: (key: string, inputs: In[]) => Promise<BatchAnswer<Out>[]>, options: BatcherOptions) {
    this.#run = run;
    this.#options = options;
  }

  /** Batchers that have work (keys come from requests, so idle ones are not kept). */
  get size(): number {
    return this.#batchers.size;
  }

  submit(key: string, input: In): Promise<Out> {
    let batcher = this.#batchers.get(key);
    if (!batcher) {
      const created: Batcher<In, Out> = new Batcher((inputs) => this.#run(key, inputs), {
        ...this.#options,
        onIdle: () => {
          if (this.#batchers.get(key) === created) this.#batchers.delete(key);
        },
      });
      batcher = created;
      this.#batchers.set(key, batcher);
    }
    return batcher.submit(input);
  }
}
