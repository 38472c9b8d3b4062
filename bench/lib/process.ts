import { execFile } from "node:child_process";

export type ProcessOutput = { stdout: string; stderr: string };

type ExecFailure = Error & { code?: number | string; killed?: boolean; stdout?: string; stderr?: string };

/** Run a program to completion, bounded in time and cancellable; a non-zero exit rejects with its output. */
export function runProcess(
  command: string,
  args: readonly string[],
  options: { timeoutMs: number; signal: AbortSignal; env?: NodeJS.ProcessEnv; cwd?: string },
): Promise<ProcessOutput> {
  return new Promise((resolve, reject) => {
    execFile(
      command,
      args,
      {
        env: options.env ?? process.env,
        cwd: options.cwd,
        timeout: options.timeoutMs,
        killSignal: "SIGKILL",
        signal: options.signal,
        maxBuffer: 64 * 1024 * 1024,
        encoding: "utf8",
      },
      (error, stdout, stderr) => {
        if (!error) return resolve({ stdout, stderr });
        const failure = error as ExecFailure;
        const why = options.signal.aborted
          ? "was cancelled"
          : failure.killed
            ? `did not finish within ${Math.round(options.timeoutMs / 1000)} s`
            : `failed (${failure.code ?? "unknown"})`;
        const output = `${stderr || ""}${stdout || ""}`.trim().split("\n").slice(-15).join("\n");
        reject(new Error(`${command} ${args.join(" ")} ${why}${output ? `:\n${output}` : ""}`, { cause: error }));
      },
    );
  });
}
