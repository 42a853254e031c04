#include "launcher/supervisor.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>

namespace gradflow::launcher {
namespace {

using Clock = std::chrono::steady_clock;

int g_signal_pipe[2] = {-1, -1};

void on_signal(int sig) {
  int saved = errno;
  char byte = static_cast<char>(sig);
  (void)!::write(g_signal_pipe[1], &byte, 1);
  errno = saved;
}

void install_signal_handlers() {
  if (g_signal_pipe[0] < 0) {
    if (::pipe2(g_signal_pipe, O_CLOEXEC | O_NONBLOCK) != 0) g_signal_pipe[0] = g_signal_pipe[1] = -1;
  }
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) ::sigaction(sig, &sa, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
}

struct Running {
  ProcessSpec spec;
  pid_t pid = -1;
  int out = -1, err = -1, in = -1;
  bool reaped = false;
  int status = 0;
};

// In the child, between fork and exec: only async-signal-safe calls.
// The stop signals arrive blocked (see start()): default handling first, then they may be delivered.
[[noreturn]] void exec_child(const ProcessSpec& spec, int out_w, int err_w, int in_r, pid_t parent,
                             std::vector<char*>& argv, std::vector<char*>& envp, const sigset_t& unblock) {
  ::setpgid(0, 0);
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != parent) ::_exit(127);  // gfrun died before prctl took effect
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGPIPE}) ::sigaction(sig, &dfl, nullptr);
  ::sigprocmask(SIG_SETMASK, &unblock, nullptr);
  ::dup2(in_r, 0);
  ::dup2(out_w, 1);
  ::dup2(err_w, 2);
  if (!spec.wdir.empty() && ::chdir(spec.wdir.c_str()) != 0) {
    const char msg[] = "gfrun: cannot enter the working directory\n";
    (void)!::write(2, msg, sizeof(msg) - 1);
    ::_exit(127);
  }
  if (spec.cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(*spec.cpu, &set);
    ::sched_setaffinity(0, sizeof(set), &set);
  }
  ::execvpe(argv[0], argv.data(), envp.data());
  const char* why = ::strerror(errno);
  const char head[] = "gfrun: cannot start ";
  (void)!::write(2, head, sizeof(head) - 1);
  (void)!::write(2, argv[0], ::strlen(argv[0]));
  (void)!::write(2, ": ", 2);
  (void)!::write(2, why, ::strlen(why));
  (void)!::write(2, "\n", 1);
  ::_exit(127);
}

bool start(Running& r) {
  int out[2], err[2], in[2];
  if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0) return false;
  if (r.spec.stdin_mode != Stdin::kNull) {
    if (::pipe2(in, O_CLOEXEC) != 0) return false;
  } else {
    in[0] = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    in[1] = -1;
  }
  std::vector<char*> argv, envp;
  for (std::string& a : r.spec.argv) argv.push_back(a.data());
  argv.push_back(nullptr);
  for (std::string& e : r.spec.env) envp.push_back(e.data());
  envp.push_back(nullptr);
  pid_t parent = ::getpid();
  // The child inherits gfrun's handlers, which write to gfrun's signal pipe: a SIGTERM that gfrun sends
  // a rank that has not yet reset them would read as gfrun being stopped. So the stop signals stay
  // blocked across fork until the child has set default handling.
  sigset_t stop, before;
  sigemptyset(&stop);
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&stop, sig);
  ::sigprocmask(SIG_BLOCK, &stop, &before);
  pid_t pid = ::fork();
  if (pid == 0) exec_child(r.spec, out[1], err[1], in[0], parent, argv, envp, before);
  ::sigprocmask(SIG_SETMASK, &before, nullptr);
  if (pid < 0) return false;
  ::setpgid(pid, pid);  // also here: no race with a kill before the child ran setpgid
  ::close(out[1]);
  ::close(err[1]);
  ::close(in[0]);
  r.pid = pid;
  r.out = out[0];
  r.err = err[0];
  r.in = in[1];
  if (r.in >= 0) ::fcntl(r.in, F_SETFL, O_NONBLOCK);
  return true;
}

void signal_all(std::vector<Running>& procs, int sig) {
  for (Running& r : procs) {
    if (!r.reaped && r.pid > 0) ::kill(-r.pid, sig);
  }
}

}  // namespace

std::string describe_wait_status(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    int sig = WTERMSIG(status);
    return "was killed by signal " + std::to_string(sig) + " (" + ::strsignal(sig) + ")";
  }
  return "ended with wait status " + std::to_string(status);
}

int exit_code_of(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

JobOutcome run_job(const std::vector<ProcessSpec>& processes, OutputRelay& output, const SupervisorOptions& options) {
  install_signal_handlers();
  std::vector<Running> procs;
  for (const ProcessSpec& spec : processes) procs.push_back({spec});
  JobOutcome outcome;
  std::optional<Clock::time_point> kill_at;  // set once teardown has begun
  auto message = [](const std::string& text) {
    std::string line = "gfrun: " + text + "\n";
    write_all(2, line.data(), line.size());
  };
  auto begin_teardown = [&](const std::string& why, int code) {
    if (kill_at) return;
    outcome.exit_code = code;
    outcome.summary = why;
    int live = 0;
    for (const Running& r : procs) live += !r.reaped && r.pid > 0;
    message(why + (live > 0 ? "; stopping the other " + std::to_string(live) + " process" + (live == 1 ? "" : "es") : ""));
    signal_all(procs, SIGTERM);
    kill_at = Clock::now() + options.grace_period;
  };

  for (Running& r : procs) {
    if (!start(r)) {
      begin_teardown("cannot start rank " + std::to_string(r.spec.rank) + ": " + ::strerror(errno), 1);
      break;
    }
  }
  Clock::time_point deadline = options.timeout ? Clock::now() + *options.timeout : Clock::time_point::max();
  // gfrun's stdin goes to the process that asked for it; an agent instead watches its own stdin.
  Running* stdin_target = nullptr;
  for (Running& r : procs) {
    if (r.spec.stdin_mode == Stdin::kForward && r.in >= 0 && !stdin_target) stdin_target = &r;
  }
  bool stdin_open = stdin_target != nullptr || options.stop_when_stdin_closes;
  bool killed = false;

  while (true) {
    std::vector<pollfd> fds;
    std::vector<std::pair<size_t, Stream>> owners;
    for (size_t i = 0; i < procs.size(); ++i) {
      if (procs[i].out >= 0) fds.push_back({procs[i].out, POLLIN, 0}), owners.push_back({i, Stream::kStdout});
      if (procs[i].err >= 0) fds.push_back({procs[i].err, POLLIN, 0}), owners.push_back({i, Stream::kStderr});
    }
    size_t outputs = fds.size();
    if (g_signal_pipe[0] >= 0) fds.push_back({g_signal_pipe[0], POLLIN, 0});
    size_t stdin_index = fds.size();
    if (stdin_open) fds.push_back({0, POLLIN, 0});

    bool all_reaped = true;
    for (const Running& r : procs) all_reaped &= r.reaped || r.pid <= 0;
    if (all_reaped && outputs == 0) break;
    ::poll(fds.data(), fds.size(), 50);

    char buffer[65536];
    for (size_t k = 0; k < outputs; ++k) {
      if (!(fds[k].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      auto [i, stream] = owners[k];
      int& fd = stream == Stream::kStdout ? procs[i].out : procs[i].err;
      ssize_t n = ::read(fd, buffer, sizeof(buffer));
      if (n > 0) {
        output.write(procs[i].spec.rank, stream, buffer, static_cast<size_t>(n), procs[i].spec.raw_output);
      } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
        output.close(procs[i].spec.rank, stream, procs[i].spec.raw_output);
        ::close(fd);
        fd = -1;
      }
    }
    if (g_signal_pipe[0] >= 0 && fds[outputs].revents & POLLIN) {
      char sig = 0;
      while (::read(g_signal_pipe[0], &sig, 1) == 1) {
        outcome.stopped_by_user = true;
        if (kill_at) message(std::string("got ") + ::strsignal(sig) + " while stopping the job");
        begin_teardown(std::string("got ") + ::strsignal(sig), 128 + sig);
      }
    }
    if (stdin_open && fds.size() > stdin_index && fds[stdin_index].revents & (POLLIN | POLLHUP | POLLERR)) {
      ssize_t n = ::read(0, buffer, sizeof(buffer));
      if (options.stop_when_stdin_closes) {
        if (n <= 0) {
          stdin_open = false;
          outcome.stopped_by_user = true;
          begin_teardown("the launching gfrun has gone (its connection closed)", 128 + SIGHUP);
        }
      } else if (n <= 0 || stdin_target->in < 0 || !write_all(stdin_target->in, buffer, static_cast<size_t>(n))) {
        stdin_open = false;
        if (stdin_target->in >= 0) ::close(stdin_target->in), stdin_target->in = -1;
      }
    }

    // Peek at an exited child without reaping it: while its zombie holds the pid, its process group id
    // cannot be reused, so killing the group (whatever the rank left running) hits nobody else.
    siginfo_t info{};
    while (::waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid != 0) {
      pid_t pid = info.si_pid;
      ::kill(-pid, SIGKILL);
      int status = 0;
      if (::waitpid(pid, &status, 0) != pid) break;
      info = {};
      for (Running& r : procs) {
        if (r.pid != pid) continue;
        r.reaped = true;
        r.status = status;
        if (r.in >= 0) ::close(r.in), r.in = -1;
        bool failed = !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        if (failed && !kill_at) {
          std::string who = r.spec.label.empty() ? "rank " + std::to_string(r.spec.rank) + " (pid " +
                                                       std::to_string(pid) + " on " + r.spec.where + ")"
                                                 : r.spec.label;
          begin_teardown(who + " " + describe_wait_status(status) + " first", exit_code_of(status));
        }
      }
    }
    Clock::time_point now = Clock::now();
    if (!kill_at && now > deadline) {
      begin_teardown("the job ran longer than --timeout " + std::to_string(options.timeout->count()) + " s", 124);
    }
    if (kill_at && !killed && now > *kill_at) {
      bool any = false;
      for (const Running& r : procs) any |= !r.reaped && r.pid > 0;
      if (any) message("grace period over: sending SIGKILL");
      signal_all(procs, SIGKILL);
      killed = true;
    }
  }
  return outcome;
}

}  // namespace gradflow::launcher
