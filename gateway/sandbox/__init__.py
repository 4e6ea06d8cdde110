"""Where model code runs: a zygote forks one locked-down job per task, and the broker answers its device calls.

The gateway's side is here (manager, session, job_process, zygote_client, broker, messages); the code that
runs inside the sandbox, stdlib only, is in jobside/.
"""
