"""The domain: thin peewee models plus typed service functions per domain.

Nothing in this package imports flask, aiogram, wechatpy or openai.
"""
